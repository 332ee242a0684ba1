"""What the language server knows about one document, without any protocol: the
analysis of its text (IR, blocks in scope, checked graphs, diagnostics) and the
answers to hover, definition, completion and symbol questions.

Positions here are 1-based (line, column in characters), as :class:`~resdsl.errors.Span`
has them; :mod:`resdsl.editor.lsp` converts to the protocol's 0-based UTF-16 ones.
Every answer reads a finished analysis: the work of a request is a walk over the
file's statements (bounded by the file size limit) or the graph's nodes (bounded by
``Limits.max_nodes``), never a new compile.

>>> doc = Document("net.res", "network n:\\n    input x: [4]\\n    fc: linear 2\\n    relu\\n")
>>> doc.hover(3, 6).splitlines()[0]
'**fc**: `fc: linear 2`'
>>> doc.definition(3, 9) is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

from .. import ir
from ..errors import Diagnostic, ErrorList, LineIndex, Span, SpecError
from ..vocab import REF_KINDS, STATEMENT_WORDS

#: Most completion items returned (an editor filters them as the user types).
MAX_COMPLETIONS = 400

Definition = Union[ir.Network, ir.Block]


@dataclass
class Located:
    """A place to jump to: a file and a span in it."""

    file: str
    span: Span


@dataclass
class Symbol:
    """A document symbol: name, kind (network | block | stage), where, and children."""

    name: str
    kind: str
    detail: str
    span: Span  # the whole construct
    name_span: Span
    children: list["Symbol"] = field(default_factory=list)


@dataclass
class Analysis:
    """One version of the document, analysed."""

    text: str
    spec: ir.SpecFile | None
    blocks: dict[str, ir.Block]
    nets: list[Any]  # resdsl.api.Net, one per network that checked
    diagnostics: list[Diagnostic]

    @property
    def good(self) -> bool:
        return self.spec is not None


def analyse(text: str, filename: str, folder: Path | None) -> Analysis:
    """Parse ``text``, resolve its imports (relative ones in ``folder``, or only
    ``std/`` ones when None) and check every network in it."""
    from ..api import _collect_blocks, _compile  # the API's own steps, on an unsaved buffer
    from ..elaborate.limits import Limits

    limits = Limits()
    errors = ErrorList()
    errors.sources[filename] = text
    spec = None
    blocks: dict[str, ir.Block] = {}
    nets = []
    from ..syntax.text import parse_text

    try:
        if len(text.encode("utf-8", "surrogatepass")) > limits.max_file_bytes:
            errors.add(Span(filename, 1, 1, 1, 2), f"the spec is over the limit of {limits.max_file_bytes:,} "
                       "bytes", hint="specs are small text files")
            errors.raise_if_any()
        spec = parse_text(text, filename, errors)
        if not errors:
            blocks, _ = _collect_blocks(spec, filename, limits, errors, folder)
        for network in spec.networks if not errors else ():
            try:
                nets.append(_compile(text, filename, "res", network.name, False, {}, limits, folder))
            except SpecError as err:
                errors.extend(err)
    except SpecError as err:
        errors.extend(err)
    return Analysis(text, spec, blocks, nets, list(errors.diagnostics))


class Document:
    """An open document: its latest analysis, the latest one that parsed (symbols,
    definitions and completion work from it while the text has errors) and the latest
    one that checked (hover's shapes and counts come from its graphs)."""

    def __init__(self, filename: str, text: str, folder: Path | None = None):
        self.filename = filename
        self.folder = folder
        self.current: Analysis
        self.good: Analysis | None = None
        self.checked: Analysis | None = None
        self.update(text)

    def update(self, text: str) -> Analysis:
        self.current = analyse(text, self.filename, self.folder)
        if self.current.good:
            self.good = self.current
        if self.current.nets or (self.current.good and not self.current.diagnostics):
            self.checked = self.current
        return self.current

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self.current.diagnostics

    # ---- questions ---------------------------------------------------------------------
    def hover(self, line: int, column: int) -> str | None:
        """Markdown about the statement at (line, column): its output shape, parameters
        and MACs in the checked network, and the op's or block's signature."""
        analysis = self.checked or self.good
        if analysis is None:
            return None
        found = _statement_at(analysis.spec, line, column)
        if found is None:
            return None
        stmt, owner = found
        target = stmt
        if isinstance(stmt, ir.Ref) and _inside(stmt.target_span, line, column):
            labelled = _labelled(owner, stmt.target, stmt.span)
            target = labelled if labelled is not None else stmt
        source = LineIndex(analysis.text).line(target.span.line) or ""
        name = getattr(target, "label", None) or getattr(target, "name", None) or type(target).__name__.lower()
        parts = [f"**{name}**: `{source.strip().rstrip(':')}`"]
        parts += _figures(analysis.nets, target.span)
        doc = _doc_of(stmt, analysis.blocks, analysis.text)
        if doc:
            parts.append(doc)
        return "\n\n".join(parts)

    def definition(self, line: int, column: int) -> Located | None:
        """Where the name at (line, column) is defined: a block call's block (across
        imports), a label use's statement, a parameter's or ``let``'s definition, an
        import's file."""
        analysis = self.good
        if analysis is None:
            return None
        spec = analysis.spec
        for imp in spec.imports:
            if _inside(imp.span, line, column):
                path = _import_file(imp.path, self.folder)
                return Located(str(path), Span(str(path), 1, 1, 1, 1)) if path else None
        found = _statement_at(spec, line, column)
        if found is None:
            return None
        stmt, owner = found
        name_span = getattr(stmt, "name_span", None)
        if isinstance(stmt, (ir.Apply, ir.Stage)) and name_span and _inside(name_span, line, column):
            name = stmt.name if isinstance(stmt, ir.Apply) else stmt.block
            block = analysis.blocks.get(name) or _local_block(spec, owner, name)
            return Located(block.span.file, block.span) if block is not None else None
        if isinstance(stmt, ir.Ref) and _inside(stmt.target_span, line, column):
            labelled = _labelled(owner, stmt.target, stmt.span)
            if labelled is not None:
                return Located(labelled.span.file, labelled.span)
            if isinstance(owner, ir.Network) and owner.input.name == stmt.target:
                return Located(owner.input.span.file, owner.input.span)
            return None
        for expr in _walk_exprs(ir.expressions(stmt)):
            if isinstance(expr, ir.NameRef) and _inside(expr.span, line, column):
                return _name_definition(owner, expr.name, stmt.span)
        return None

    def completions(self, line: int, column: int) -> list[tuple[str, str, str]]:
        """(label, kind, detail) candidates for the text before (line, column): op and
        block names at a statement's start, labels after add/mul/concat/from, keyword
        arguments and names in scope inside an op's or block's arguments."""
        from ..ops import REGISTRY, signature_hint

        text = LineIndex(self.current.text).line(line) or ""
        before = text[:max(column - 1, 0)]
        analysis = self.good
        owner = _owner_at(analysis.spec, line) if analysis else None
        blocks = dict(analysis.blocks) if analysis else {}
        if analysis and owner is not None:
            blocks.update((b.name, b) for b in getattr(owner, "blocks", ()))
        items: list[tuple[str, str, str]] = []
        ref = re.match(r"^\s*(?:\w+\s*:\s*)?(add|mul|concat|from)\s+\w*$", before)
        start = re.match(r"^\s*(?:\w+\s*:\s*)?\w*$", before)
        call = re.match(r"^\s*(?:\w+\s*:\s*)?(?:defaults\s+|stage\s+)?(\w+)(?:\(|\s+)(.*)$", before)
        if ref:
            items = [(label, "label", "label in scope") for label in _labels_before(owner, line)]
        elif start:
            ops = [(op.name, "op", signature_hint(op)) for op in REGISTRY.values() if not op.internal]
            items = ops + [(name, "block", _signature(b)) for name, b in blocks.items()]
            items += [(word, "keyword", "statement") for word in STATEMENT_WORDS]
        elif call and call.group(1) not in REF_KINDS:
            name = call.group(1)
            if name in REGISTRY:
                op = REGISTRY[name]
                items = [(f"{a.name}=", "argument", a.doc or a.kind) for a in (*op.positional, *op.keywords)]
            elif name in blocks:
                items = [(f"{p.name}=", "argument", p.type) for p in blocks[name].params]
            items += [(n, "variable", "in scope") for n in _names_in_scope(owner, line)]
        return items[:MAX_COMPLETIONS]

    def symbols(self) -> list[Symbol]:
        """Networks, their blocks and stages, and the file's own blocks."""
        analysis = self.good
        if analysis is None:
            return []
        spec = analysis.spec
        out = [_symbol(block, "block") for block in spec.blocks]
        for network in spec.networks:
            symbol = _symbol(network, "network")
            symbol.children = [_symbol(block, "block") for block in network.blocks]
            symbol.children += [_stage_symbol(stage) for stage in _stages(network.body)]
            out.append(symbol)
        return sorted(out, key=lambda s: (s.span.line, s.span.column))


# ---- walking the IR ----------------------------------------------------------------------
def _definitions(spec: ir.SpecFile) -> Iterator[Definition]:
    yield from spec.blocks
    for network in spec.networks:
        yield network
        yield from network.blocks


def _walk(body: tuple[ir.Stmt, ...]) -> Iterator[ir.Stmt]:
    for stmt in body:
        yield stmt
        for inner in ir.bodies(stmt):
            yield from _walk(inner)


def _walk_exprs(exprs: tuple[Any, ...]) -> Iterator[Any]:
    stack = list(exprs)
    while stack:
        expr = stack.pop()
        yield expr
        stack.extend(ir.expr_children(expr))


def _inside(span: Span | None, line: int, column: int) -> bool:
    if span is None or not span.located:
        return False
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) <= (span.end_line, span.end_column)


def _end(definition: Definition) -> tuple[int, int]:
    last = (definition.span.end_line, definition.span.end_column)
    for stmt in _walk(definition.body):
        last = max(last, (stmt.span.end_line, stmt.span.end_column))
    return last


def _owner_at(spec: ir.SpecFile | None, line: int) -> Definition | None:
    """The innermost definition whose lines hold ``line``; past every end (a statement
    being typed below the last one that parsed), the one that ended last."""
    if spec is None:
        return None
    started = [(d, _end(d)[0]) for d in _definitions(spec) if d.span.line <= line]
    holding = [d for d, end in started if end >= line]
    if holding:
        return max(holding, key=lambda d: d.span.line)
    return max(started, key=lambda pair: pair[1])[0] if started else None


def _statement_at(spec: ir.SpecFile | None, line: int, column: int) -> tuple[Any, Definition] | None:
    """The innermost statement (or input declaration) at the position, with its definition."""
    if spec is None:
        return None
    best = None
    for definition in _definitions(spec):
        candidates = list(_walk(definition.body))
        if isinstance(definition, ir.Network):
            candidates.append(definition.input)
        for stmt in candidates:
            span = stmt.span
            if _inside(span, line, column):
                size = (span.end_line - span.line, span.end_column - span.column)
                if best is None or size < best[0]:
                    best = (size, stmt, definition)
    return (best[1], best[2]) if best else None


def _labelled(owner: Definition, label: str, before: Span) -> Any:
    """The statement labelled ``label`` in ``owner``, the last one before ``before``."""
    found = None
    for stmt in _walk(owner.body):
        if getattr(stmt, "label", None) == label:
            if found is None or (stmt.span.line, stmt.span.column) < (before.line, before.column):
                found = stmt
    return found


def _labels_before(owner: Definition | None, line: int) -> list[str]:
    if owner is None:
        return []
    labels = [owner.input.name] if isinstance(owner, ir.Network) else []
    labels += [s.label for s in _walk(owner.body) if getattr(s, "label", None) and s.span.line < line]
    return list(dict.fromkeys(labels))


def _names_in_scope(owner: Definition | None, line: int) -> list[str]:
    if owner is None:
        return []
    names = [p.name for p in owner.params]
    names += [s.name for s in _walk(owner.body) if isinstance(s, ir.Let) and s.span.line < line]
    return list(dict.fromkeys(names))


def _name_definition(owner: Definition, name: str, before: Span) -> Located | None:
    lets = [s for s in _walk(owner.body) if isinstance(s, ir.Let) and s.name == name
            and s.span.line <= before.line]
    if lets:
        return Located(lets[-1].span.file, lets[-1].name_span)
    for param in owner.params:
        if param.name == name:
            return Located(param.span.file, param.span)
    return None


def _local_block(spec: ir.SpecFile, owner: Definition, name: str) -> ir.Block | None:
    for block in getattr(owner, "blocks", ()):
        if block.name == name:
            return block
    for network in spec.networks:
        for block in network.blocks:
            if block.name == name:
                return block
    return None


def _import_file(path: str, folder: Path | None) -> Path | None:
    from .. import std
    from ..api import STD_PREFIX

    if path.startswith(STD_PREFIX):
        directory = std.directory()
        module = path[len(STD_PREFIX):].removesuffix(".res")
        return directory / f"{module}.res" if directory is not None and std.NAME.fullmatch(module) else None
    if folder is None:
        return None
    target = (folder / path).resolve()
    return target if target.is_file() else None


def _stages(body: tuple[ir.Stmt, ...]) -> Iterator[ir.Stage]:
    return (stmt for stmt in _walk(body) if isinstance(stmt, ir.Stage))


def _symbol(definition: Definition, kind: str) -> Symbol:
    end_line, end_column = _end(definition)
    whole = Span(definition.span.file, definition.span.line, 1, end_line, end_column)
    return Symbol(definition.name, kind, _signature(definition), whole, definition.span)


def _stage_symbol(stage: ir.Stage) -> Symbol:
    return Symbol(stage.label or stage.block, "stage", f"stage {stage.block}", stage.span,
                  stage.name_span if stage.name_span.located else stage.span)


def _signature(definition: Definition) -> str:
    params = ", ".join(f"{p.name}: {p.type}" for p in definition.params)
    return f"{definition.name}({params})"


# ---- hover figures -------------------------------------------------------------------------
def _figures(nets: list[Any], span: Span) -> list[str]:
    """Output shapes, parameters and MACs of what the statement at ``span`` made."""
    from ..analysis.report import node_macs
    from ..graph import containers, op_node, op_nodes
    from ..shapes import format_shape

    lines = []
    for net in nets:
        graph = net.graph
        made = [c for path, c in containers(graph).items() if c.span == span and c.stmt is not None]
        paths = {c.path for c in made}
        tops = [c for c in made if c.path.rpartition(".")[0] not in paths]
        ops = [n for n in op_nodes(graph) if n.span == span and n.op != "input"] if not tops else []
        inputs = [n for n in op_nodes(graph) if n.span == span and n.op == "input"]
        if tops:
            nodes = list(op_nodes(graph))
            shapes, params, macs = [], 0, 0
            for container in tops:
                prefix = container.path + "."
                inside = [n for n in nodes if n.container == container.path or n.container.startswith(prefix)]
                params += sum(n.params for n in inside)
                macs += sum(node_macs(graph, n.id) for n in inside)
                shapes.append(format_shape(op_node(graph, container.output).shape)
                              if container.output >= 0 else "?")
            lines.append(_summary(net.name if len(nets) > 1 else "", shapes, params, macs, len(tops)))
        elif ops or inputs:
            found = ops or inputs
            shapes = [format_shape(n.shape) for n in found]
            lines.append(_summary(net.name if len(nets) > 1 else "", shapes, sum(n.params for n in found),
                                  sum(node_macs(graph, n.id) for n in found), len(found)))
    return lines


def _summary(network: str, shapes: list[str], params: int, macs: int, count: int) -> str:
    distinct = list(dict.fromkeys(shapes))
    shown = ", ".join(distinct[:4]) + (", ..." if len(distinct) > 4 else "")
    where = f"{network}: " if network else ""
    times = f" ({count} instances, totals)" if count > 1 else ""
    return f"{where}output {shown} · {params:,} parameters · {macs:,} MACs{times}"


def _doc_of(stmt: Any, blocks: dict[str, ir.Block], text: str) -> str | None:
    """The op's usage line and doc, or the block's signature and the comment above it."""
    from ..ops import REGISTRY, signature_hint

    name = stmt.name if isinstance(stmt, ir.Apply) else stmt.block if isinstance(stmt, ir.Stage) else None
    if name is None:
        return None
    if name in blocks:
        block = blocks[name]
        doc = _comment_above(block.span, text) if block.span.file == stmt.span.file else ""
        return f"block `{_signature(block)}`" + (f"\n\n{doc}" if doc else "")
    op = REGISTRY.get(name)
    if op is not None and not op.internal:
        return f"`{signature_hint(op).removeprefix('usage: ')}`\n\n{op.doc}"
    return None


def _comment_above(span: Span, text: str) -> str:
    index = LineIndex(text)
    lines = []
    number = span.line - 1
    while number > 0 and (index.line(number) or "").strip().startswith("#"):
        lines.append((index.line(number) or "").strip().lstrip("#").strip())
        number -= 1
    return " ".join(reversed(lines))
