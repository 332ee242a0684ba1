"""The YAML form: the document's structure is YAML, every statement a string in the
text syntax, parsed by the same grammar, so both forms give equal IR.

Only plain YAML is accepted: the file is composed with PyYAML's safe loader (no
object is ever constructed from it), any tag other than YAML's core ones is an
error, and so are aliases (they would let a small file expand exponentially).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .. import ir
from ..errors import ErrorList, Span, did_you_mean
from .text import Locate, ToIR, parse_fragment

# libyaml's parser when PyYAML has it: the pure-Python one costs about 20 us a byte
# (3 s for a file at the size limit). Both compose nodes only; nothing is constructed.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_CORE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
TOP_LEVEL_KEYS = ("imports", "network", "defaults", "input", "blocks", "body")
#: Deepest nesting of YAML collections accepted (each residual body takes two levels).
MAX_YAML_DEPTH = 100


class _Reader:
    def __init__(self, filename: str, errors: ErrorList):
        self.filename = filename
        self.errors = errors
        self.seen: set[int] = set()
        # One converter and one tree cache for every statement string of the file.
        self.converter = ToIR(lambda *pos: Span(filename, *pos), errors)
        self.trees: dict = {}

    # -- positions ---------------------------------------------------------------
    def node_span(self, node: yaml.Node) -> Span:
        (line, column), (end_line, end) = _position(self.errors, self.filename, node.start_mark.index), \
            _position(self.errors, self.filename, node.end_mark.index)
        return Span(self.filename, line, column, line, end if end_line == line else column + 1)

    def locator(self, node: yaml.ScalarNode) -> Locate:
        """Map positions inside a statement string to positions in the YAML file."""
        base_line, base_column = _position(self.errors, self.filename, node.start_mark.index)
        base_line, base_column = base_line - 1, base_column - 1 + (1 if node.style in ("'", '"') else 0)

        def locate(line: int, column: int, end_line: int, end_column: int) -> Span:
            col = base_column + column if line == 1 else column
            end_col = base_column + end_column if end_line == 1 else end_column
            return Span(self.filename, base_line + line, col, base_line + end_line, end_col)

        return locate

    # -- checks ------------------------------------------------------------------
    def check(self, node: yaml.Node) -> bool:
        """Reject aliases and non-core tags; True if the node may be read."""
        if id(node) in self.seen:
            if not self.errors.full:
                self.errors.add(self.node_span(node), "YAML aliases (*name) are not supported in specs",
                            hint="write the repeated part out, or define a block and use it twice")
            return False
        self.seen.add(id(node))
        if node.tag not in _CORE_TAGS:
            if self.errors.full:
                return False
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.errors.add(self.node_span(node), f"YAML tag '{tag}' is not allowed in specs",
                            hint="specs are plain YAML: strings, lists and mappings only")
            return False
        return True

    def string(self, node: yaml.Node, what: str) -> str | None:
        if not self.check(node):
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            if not self.errors.full:
                self.errors.add(self.node_span(node), f"{what} must be a string",
                            hint='quote it: "conv1: conv 3x3, 64"')
            return None
        return node.value

    def seq(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not self.check(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.errors.add(self.node_span(node), f"{what} must be a list", hint="write '- ITEM' lines")
            return []
        return node.value

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
        if not self.check(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.errors.add(self.node_span(node), f"{what} must be a mapping", hint="write 'KEY: VALUE' lines")
            return []
        return node.value

    def folded_locator(self, node: yaml.ScalarNode, text: str) -> Locate:
        """Positions inside a statement that spans lines in the file (a plain or quoted
        scalar folded over lines, or a block scalar ``>``/``|``): each character of the
        value is matched, in order, with its character in the file (folding only
        changes whitespace), and a span maps through that table. Linear in the scalar."""
        source = self.errors.sources.get(self.filename, "")
        start, end = node.start_mark.index, node.end_mark.index
        where: list[int] = []
        cursor = start
        for char in text:
            if not char.isspace():
                found = source.find(char, cursor, end)
                cursor = (found if found >= 0 else cursor) + 1
            where.append(cursor - 1 if not char.isspace() else cursor)
        last = len(where) - 1

        def at(index: int) -> tuple[int, int]:
            return _position(self.errors, self.filename, where[min(max(index, 0), last)] if where else start)

        def locate(line: int, column: int, end_line: int, end_column: int) -> Span:
            first = column - 1
            line_, col = at(first)
            stop_line, stop = at(max(end_column - 2, first))
            return Span(self.filename, line_, col, stop_line, stop + 1)

        return locate

    def fragment(self, node: yaml.Node, start: str, what: str) -> Any:
        text = self.string(node, what)
        if text is None:
            return None
        if node.style in ("|", ">") or "\n" in self.errors.sources.get(self.filename, "")[
                node.start_mark.index:node.end_mark.index].rstrip("\n"):
            # One statement, written over several lines: parse it as the one line it is.
            flat = text.replace("\r", " ").replace("\n", " ")
            return parse_fragment(flat, start, self.folded_locator(node, text), self.errors,
                                  source=flat, converter=self.converter, trees=self.trees)
        return parse_fragment(text, start, self.locator(node), self.errors,
                              source=text, converter=self.converter, trees=self.trees)

    # -- structure ---------------------------------------------------------------
    def statements(self, node: yaml.Node, what: str) -> tuple[ir.Stmt, ...]:
        items = []
        for item in self.seq(node, what):
            if self.errors.full:  # the spec fails anyway; what follows would be dropped
                break
            if isinstance(item, yaml.MappingNode) and self.check(item):
                items.append(self.compound(item))
            else:
                items.append(self.fragment(item, "yaml_simple", "a statement"))
        return self.converter.body(items)

    def compound(self, node: yaml.MappingNode) -> Any:
        if len(node.value) != 1:
            self.errors.add(self.node_span(node), "a statement with a body is a mapping with exactly one key",
                            hint="write '- residual:' followed by its list of statements")
            return None
        key, value = node.value[0]
        head = self.fragment(key, "yaml_head", "a statement")
        if head is None:
            return None
        body = self.statements(value, f"the body of '{key.value}'")
        self.converter.locate = self.locator(key)
        return self.converter.statement(head.label, head.head, body=body)

    def document(self, root: yaml.Node) -> ir.SpecFile:
        fields: dict[str, yaml.Node] = {}
        for key, value in self.mapping(root, "a YAML spec"):
            name = self.string(key, "a top-level key")
            if name is None:
                continue
            if name not in TOP_LEVEL_KEYS:
                if self.errors.full:
                    break
                self.errors.add(self.node_span(key), f"unknown top-level key '{name}'",
                                hint=did_you_mean(name, TOP_LEVEL_KEYS))
                continue
            fields[name] = value
        where = self.node_span(root)
        for required in ("network", "input", "body"):
            if required not in fields:
                self.errors.add(where, f"the YAML spec has no '{required}' key",
                                hint="a YAML spec has keys network, input, body (and optionally imports, defaults, blocks)")
        if self.errors:
            return ir.SpecFile()
        signature = self.fragment(fields["network"], "yaml_signature", "'network'")
        net_input = self.fragment(fields["input"], "yaml_input", "'input'")
        defaults: tuple[ir.Defaults, ...] = ()
        if "defaults" in fields:
            parsed = [self.fragment(item, "yaml_defaults", "a defaults entry")
                      for item in self.seq(fields["defaults"], "'defaults'")]
            defaults = tuple(d for d in parsed if d is not None)
        imports = self.imports(fields["imports"]) if "imports" in fields else ()
        blocks = []
        if "blocks" in fields:
            for key, value in self.mapping(fields["blocks"], "'blocks'"):
                block_sig = self.fragment(key, "yaml_signature", "a block signature")
                body = self.statements(value, "a block body")
                if block_sig is not None:
                    name, params, span = block_sig
                    blocks.append(ir.Block(name=name, params=params, body=body, span=span))
        body = self.statements(fields["body"], "'body'")
        if signature is None or net_input is None or self.errors:
            return ir.SpecFile()
        name, params, span = signature
        network = ir.Network(name=name, params=params, input=net_input, blocks=tuple(blocks),
                             body=defaults + body, span=span)
        return ir.SpecFile(imports=imports, networks=(network,))

    def imports(self, node: yaml.Node) -> tuple[ir.Import, ...]:
        """``imports:`` - a list of paths, as the text form's ``import "PATH"`` lines."""
        found = []
        for item in self.seq(node, "'imports'"):
            path = self.string(item, "an import path")
            if path is not None:
                found.append(ir.Import(path=path, span=self.node_span(item)))
        return tuple(found)


_QUOTED_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|#[^\n]*")


def _flow_too_deep(text: str) -> int | None:
    """Offset of a ``[``/``{`` nested past the limit, outside quotes and comments.

    PyYAML's scanner looks up to 1,024 characters ahead for every open bracket, so
    a line of brackets costs it a second; this regex pass finds it at once.
    """
    masked = _QUOTED_OR_COMMENT.sub(lambda m: " " * len(m.group()), text)
    depth = 0
    for match in re.finditer(r"[\[\]{}]", masked):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return match.start()
        else:
            depth = max(0, depth - 1)
    return None


def _position(errors: ErrorList, filename: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character offset, lines split at '\\n' only as the
    text lexer and ErrorList count them (PyYAML's own marks also break lines at
    U+0085, U+2028 and U+2029, which would point the caret at the wrong line)."""
    lines = errors.line_index(filename)
    return lines.position(index) if lines is not None else (1, index + 1)


def _depth_ok(text: str, filename: str, errors: ErrorList) -> bool:
    """Bound the nesting of lists and mappings before PyYAML's (recursive) composer runs.

    The event parser keeps its own stack, so a hostile ``[[[[...`` is seen here
    without recursion and reported at the collection that goes too deep.
    """
    position = _flow_too_deep(text)
    if position is not None:
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        errors.add(Span(filename, line, column, line, column + 1),
                   f"YAML lists and mappings nested more than {MAX_YAML_DEPTH} levels deep",
                   hint="flatten the structure; blocks help")
        return False
    depth, aliases = 0, False
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line, column = _position(errors, filename, event.start_mark.index)
                errors.add(Span(filename, line, column, line, column + 1),
                           f"YAML lists and mappings nested more than {MAX_YAML_DEPTH} levels deep",
                           hint="flatten the structure; blocks help")
                return False
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):  # located here, at the '*name' itself
            aliases = True
            if errors.full:  # the rest would be dropped: stop reading
                break
            line, column = _position(errors, filename, event.start_mark.index)
            errors.add(Span(filename, line, column, line, column + 1),
                       "YAML aliases (*name) are not supported in specs",
                       hint="write the repeated part out, or define a block and use it twice")
    return not aliases


def parse_yaml(text: str, filename: str = "<spec>", errors: ErrorList | None = None) -> ir.SpecFile:
    """Parse a YAML spec into IR (equal to the text form's IR, spans aside)."""
    own_errors = errors is None
    errors = errors if errors is not None else ErrorList()
    errors.sources[filename] = text
    try:
        if not _depth_ok(text, filename, errors):
            errors.raise_if_any()
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _position(errors, filename, mark.index) if mark else (1, 1)
        errors.add(Span(filename, line, column, line, column + 1),
                   f"invalid YAML: {exc.problem or exc.context}",
                   hint="check indentation and quoting; strings holding ': ' must be quoted")
        errors.raise_if_any()
    except yaml.reader.ReaderError as exc:  # a character YAML forbids, e.g. a form feed
        line, column = _position(errors, filename, exc.position)
        errors.add(Span(filename, line, column, line, column + 1),
                   f"invalid YAML: character {chr(exc.character)!r} is not allowed",
                   hint="YAML allows printable characters, tabs and line breaks only")
        errors.raise_if_any()
    except yaml.YAMLError as exc:
        errors.add(Span(filename, 1, 1, 1, 2), f"invalid YAML: {exc}")
        errors.raise_if_any()
    if root is None:
        errors.add(Span(filename, 1, 1, 1, 2), "the YAML spec is empty",
                   hint="a YAML spec has keys network, input, body")
        errors.raise_if_any()
    spec = _Reader(filename, errors).document(root)
    if own_errors:
        errors.raise_if_any()
    return spec
