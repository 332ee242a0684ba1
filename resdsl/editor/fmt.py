"""``resdsl fmt``: one canonical layout for ``.res`` text, comments kept where they are.

The layout is computed from the parse: a second Lark parser over the same grammar
keeps every token (``keep_all_tokens``), so each token knows the rule it belongs to
(a ``-`` under ``neg`` is unary, a ``=`` under ``kwarg`` takes no spaces). The
Indenter's ``_NL``/``_INDENT``/``_DEDENT`` tokens cut the token stream into logical
lines and give their depth. Comments are no tokens of the grammar (they are folded
into ``_NL``, or dropped inside brackets); they are read from the source text between
consecutive tokens, which holds nothing else but whitespace, line continuations and
newlines, and attached to the token before them (a trailing comment) or after them.

The rules, as black and rustfmt users expect them:

- four spaces per indentation level; one space around binary operators, after
  ``,`` and ``:``, none inside brackets; ``stride=2`` in arguments, ``width: int = 1``
  and ``let n = 3`` with spaces;
- a logical line longer than :data:`LINE_LENGTH` (comments not counted) breaks its
  widest bracket group: the items on a row of their own when they fit, else filled into
  as few rows as fit (clang-format's bin packing: specs stay short) with a trailing comma
  where the grammar allows one (parameter lists, shapes, tuples); the closing bracket
  starts the row after them;
- at most one blank line in a row; one before and after every ``block`` and
  ``network`` definition (its comments stay attached above it), none at the start of
  a body or of the file;
- a trailing comment follows its code by two spaces, consecutive trailing comments
  are aligned in one column (as gofmt does); comment text is kept verbatim.

Formatting never changes meaning: the formatted text must parse to the same
tokens (trailing commas aside) and the same comments in the same order, or
:func:`format_text` raises instead of returning it.

>>> print(format_text("block b(w:int=1):\\n  conv 3x3,w,stride=-1 # first\\n"), end="")
block b(w: int = 1):
    conv 3x3, w, stride=-1  # first
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import re
from dataclasses import dataclass, field
from typing import Iterator, Union

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from ..errors import ErrorList, Span, SpecError
from ..syntax.diagnostics import syntax_diagnostic
from ..syntax.grammar import IndentationProblem, SpecIndenter, grammar_text
from ..syntax.text import MAX_SYNTAX_DEPTH, _first_position, _too_deep, file_locator

#: Longest line the formatter aims for (rustfmt's width; comments do not count).
LINE_LENGTH = 100
INDENT = "    "

_LAYOUT = {"_NL", "_INDENT", "_DEDENT"}
_OPENS = {"LPAR", "LSQB"}
_CLOSES = {"RPAR", "RSQB"}
_NO_SPACE_BEFORE = {"COMMA", "RPAR", "RSQB", "COLON"}
_TIGHT_EQUALS = {"kwarg"}  # `stride=2`; a parameter's default and a let take spaces
_UNARY_RULES = {"neg", "unary"}
#: Brackets after which the grammar accepts a trailing comma (keyed by the bracket's rule).
_TRAILING_COMMA_RULES = {"signature", "shape", "tuple_lit"}
_DEFINITIONS = {"BLOCK", "NETWORK"}
_COMMENT = re.compile(r"#[^\n]*")


@dataclass
class Tok:
    """One significant token with its rule and the comments that travel with it."""

    type: str
    value: str
    rule: str  # the grammar rule whose node holds the token
    line: int
    end_line: int
    start: int  # offsets into the source
    end: int
    column: int = 0  # 0-based
    before: list[str] = field(default_factory=list)  # own-line comments inside brackets, before it
    after: str | None = None  # the comment ending its line

    @property
    def text(self) -> str:
        return self.value.split(":")[0].rstrip() + ":" if self.type == "LABEL" else self.value


@dataclass
class Group:
    """A bracket pair: items are the atoms between commas, each ending with its comma."""

    open: Tok
    items: list[list["Atom"]]
    close: Tok


Atom = Union[Tok, Group]


@dataclass
class Line:
    """A logical line (a statement, a signature, an import) of the source."""

    toks: list[Tok]
    depth: int
    column: int  # where it started in the source (0-based), for placing comments

    @property
    def opens_body(self) -> bool:
        return self.toks[-1].type == "COLON"

    @property
    def defines(self) -> bool:
        return self.toks[0].type in _DEFINITIONS


@dataclass
class Row:
    depth: int
    code: str  # "" for a comment on its own line
    comment: str | None = None


BLANK = None  # a blank row


@functools.lru_cache(maxsize=1)
def _layout_parser() -> Lark:
    """The grammar's parser keeping every token: punctuation and keywords have positions."""
    return Lark(grammar_text(), parser="lalr", lexer="contextual", postlex=SpecIndenter(),
                propagate_positions=True, maybe_placeholders=True, start="start",
                keep_all_tokens=True, cache=False)


def format_text(text: str, filename: str = "<spec>") -> str:
    """The canonical layout of ``text``, a ``.res`` spec; raises :class:`SpecError` when
    it does not parse (the formatter only lays out valid specs, as black does).

    >>> format_text("network n:\\n    input x: [4]\\n\\n\\n\\n    relu\\n")
    'network n:\\n    input x: [4]\\n\\n    relu\\n'
    """
    tokens = _tokens(text, filename)
    comments = _comments(text, tokens)
    result = _layout(text, tokens, comments)
    _check_same(text, result, tokens, comments, filename)
    return result


def _tokens(text: str, filename: str) -> list[tuple[Token, str]]:
    """Every token of the parse (layout ones included) with the rule holding it, in order."""
    source = text if text.endswith("\n") else text + "\n"
    errors = ErrorList(sources={filename: text})
    try:
        tree = _layout_parser().parse(source)
    except (UnexpectedInput, IndentationProblem) as exc:
        syntax_diagnostic(exc, text, file_locator(filename), errors)
        errors.raise_if_any()
        raise
    deep = _too_deep(tree, MAX_SYNTAX_DEPTH)
    if deep is not None:
        line, column = _first_position(deep)
        errors.add(file_locator(filename)(line, column, line, column + 1),
                   f"nested more than {MAX_SYNTAX_DEPTH} levels deep", hint="flatten the expression")
        errors.raise_if_any()
    return list(_leaves(tree))


def _leaves(tree: Tree) -> Iterator[tuple[Token, str]]:
    stack: list[tuple[object, str]] = [(tree, "start")]
    while stack:
        node, rule = stack.pop()
        if isinstance(node, Tree):
            stack.extend((child, node.data) for child in reversed(node.children) if child is not None)
        elif isinstance(node, Token):
            yield node, str(rule)


def _comments(text: str, tokens: list[tuple[Token, str]]) -> list[tuple[int, str]]:
    """(offset, text) of every comment: whatever lies between two tokens is whitespace,
    a line continuation, a newline or a comment, so each ``#`` there starts one."""
    found = []
    position = 0
    for token, _ in tokens:
        if token.type in _LAYOUT or token.start_pos is None:
            continue
        found += [(m.start(), m.group().rstrip()) for m in _COMMENT.finditer(text, position, token.start_pos)]
        position = token.end_pos
    found += [(m.start(), m.group().rstrip()) for m in _COMMENT.finditer(text, position)]
    return found


def _lines(tokens: list[tuple[Token, str]]) -> list[Line]:
    lines: list[Line] = []
    current: list[Tok] = []
    depth = 0
    for token, rule in tokens:
        kind = token.type
        if kind == "_INDENT":
            depth += 1
        elif kind == "_DEDENT":
            depth -= 1
        elif kind == "_NL":
            if current:
                lines.append(Line(current, line_depth, current[0].column))
            current = []
        else:
            if not current:
                line_depth = depth
            current.append(Tok(kind, token.value, rule, token.line, token.end_line, token.start_pos,
                               token.end_pos, token.column - 1))
    if current:
        lines.append(Line(current, line_depth, current[0].column))
    return lines


def _layout(text: str, tokens: list[tuple[Token, str]], comments: list[tuple[int, str]]) -> str:
    lines = _lines(tokens)
    gaps = _attach(text, lines, comments)
    rows: list[Row | None] = []
    cols: list[int] = []  # the source column of the latest line at each depth on the current chain
    open_defs: list[int] = []  # depths of the definitions whose bodies are open
    previous: Line | None = None
    for index, line in enumerate(lines):
        closes_def = False
        while open_defs and line.depth <= open_defs[-1]:
            open_defs.pop()
            closes_def = True
        # the columns of the previous line's chain (a comment may sit in a body that just
        # ended), and this line's own when it opens a deeper level
        chain = cols if line.depth < len(cols) else [*cols, line.column]
        entries = _gap_rows(gaps[index], previous, line, chain)
        del cols[line.depth:]
        cols.append(line.column)
        rows += _space_gap(entries, previous, line, closes_def)
        rows += _render(_group(line.toks), line.depth)
        if line.defines:
            open_defs.append(line.depth)
        previous = line
    tail = _gap_rows(gaps[len(lines)], previous, None, cols)
    while tail and tail[-1] is BLANK:
        tail.pop()
    rows += _collapse(tail)
    return _emit(rows)


def _attach(text: str, lines: list[Line], comments: list[tuple[int, str]]) -> list[list[tuple[int, str | None]]]:
    """Attach trailing comments and comments inside brackets to tokens; return, for each
    gap before a line (and the one after the last), its source lines as (column, comment)
    entries, None for a blank line."""
    flat = [(tok, index) for index, line in enumerate(lines) for tok in line.toks]
    starts = [tok.start for tok, _ in flat]
    for offset, comment in comments:
        at = bisect.bisect_left(starts, offset)  # the first token after the comment
        previous = flat[at - 1][0] if at > 0 else None
        if previous is not None and previous.end_line == text.count("\n", 0, offset) + 1:
            previous.after = comment
        elif 0 < at < len(flat) and flat[at - 1][1] == flat[at][1]:
            flat[at][0].before.append(comment)
        # otherwise a comment on a line of its own between statements: read by _gap_entry
    gaps = []
    for index in range(len(lines) + 1):
        start = lines[index - 1].toks[-1].end if index > 0 else 0
        end = lines[index].toks[0].start if index < len(lines) else len(text)
        pieces = text[start:end].split("\n")
        # the first piece ends the previous line (its trailing comment is attached); the
        # last one indents the next line, or is the file's unterminated last line
        whole = pieces[1 if index > 0 else 0:] if index == len(lines) else pieces[1 if index > 0 else 0:-1]
        gaps.append([_gap_entry(piece) for piece in whole])
    return gaps


def _gap_entry(piece: str) -> tuple[int, str | None]:
    """A source line between statements: holds only a comment, or nothing."""
    column = piece.find("#")
    return (column, piece[column:].rstrip()) if column >= 0 else (0, None)


def _gap_rows(entries: list[tuple[int, str | None]], previous: Line | None, line: Line | None,
              cols: list[int]) -> list[Row | None]:
    """Comment rows at the depth their column names, within what the context allows."""
    low = line.depth if line is not None else 0
    high = previous.depth + previous.opens_body if previous is not None else 0
    rows: list[Row | None] = []
    for column, comment in entries:
        if comment is None:
            rows.append(BLANK)
            continue
        depth = low
        for d in range(min(high, len(cols) - 1), low - 1, -1):
            if cols[d] <= column:
                depth = d
                break
        rows.append(Row(depth, "", comment))
    return rows


def _space_gap(rows: list[Row | None], previous: Line | None, line: Line, closes_def: bool) -> list[Row | None]:
    if previous is None or previous.opens_body:
        while rows and rows[0] is BLANK:
            rows.pop(0)
        return _collapse(rows)
    if (line.defines or closes_def) and BLANK not in rows:
        # after a definition, comments indented into its body stay with it
        at = 0
        while closes_def and at < len(rows) and rows[at] is not BLANK and rows[at].depth > line.depth:
            at += 1
        rows.insert(at, BLANK)
    return _collapse(rows)


def _collapse(rows: list[Row | None]) -> list[Row | None]:
    return [row for i, row in enumerate(rows) if not (row is BLANK and i > 0 and rows[i - 1] is BLANK)]


# ---- one logical line -------------------------------------------------------------
def _group(toks: list[Tok]) -> list[Atom]:
    """Nest the bracket pairs of a logical line, splitting their contents at commas."""
    stack: list[tuple[Tok, list[list[Atom]]]] = []
    top: list[Atom] = []
    for tok in toks:
        if tok.type in _OPENS:
            stack.append((tok, [[]]))
        elif tok.type in _CLOSES and stack:
            open_, items = stack.pop()
            group = Group(open_, [item for item in items if item], tok)
            (stack[-1][1][-1] if stack else top).append(group)
        elif stack:
            stack[-1][1][-1].append(tok)
            if tok.type == "COMMA":
                stack[-1][1].append([])
        else:
            top.append(tok)
    return top


def _flatten(atoms: list[Atom]) -> list[Tok]:
    out: list[Tok] = []
    for atom in atoms:
        if isinstance(atom, Tok):
            out.append(atom)
            continue
        inner = _flatten([a for item in atom.items for a in item])
        if inner and inner[-1].type == "COMMA" and not inner[-1].after and not atom.close.before:
            inner.pop()  # a trailing comma, dropped on one line
        out += [atom.open, *inner, atom.close]
    return out


def _spaced(left: Tok, right: Tok) -> bool:
    if right.type in _NO_SPACE_BEFORE or left.type in _OPENS:
        return False
    if right.type == "LPAR" and left.type == "CALL_NAME":
        return False  # the grammar needs `name(` together
    if left.rule in _UNARY_RULES and left.type in ("MINUS", "PLUS"):
        return False
    if "EQUAL" in (left.type, right.type):
        equal = left if left.type == "EQUAL" else right
        return equal.rule not in _TIGHT_EQUALS
    return True


def _join(toks: list[Tok]) -> str:
    parts = [toks[0].text]
    for left, right in zip(toks, toks[1:]):
        parts.append(" " + right.text if _spaced(left, right) else right.text)
    return "".join(parts)


def _fits_one_row(toks: list[Tok]) -> bool:
    """No comment would land inside the row."""
    return not any(t.after for t in toks[:-1]) and not any(t.before for t in toks[1:])


def _one_row(atoms: list[Atom], depth: int) -> list[Row | None] | None:
    """The atoms on one row (after the comments on rows of their own before it), or None
    when a comment would land inside the row or the row is too long."""
    toks = _flatten(atoms)
    if not _fits_one_row(toks) or len(INDENT) * depth + len(_join(toks)) > LINE_LENGTH:
        return None
    return [*(Row(depth, "", c) for c in toks[0].before), Row(depth, _join(toks), toks[-1].after)]


def _render(atoms: list[Atom], depth: int) -> list[Row | None]:
    """One logical line as rows: whole when it fits, else its widest bracket group broken
    out (the items on one row of their own if they fit, else packed into rows)."""
    groups = [i for i, a in enumerate(atoms) if isinstance(a, Group) and (a.items or a.close.before)]
    whole = _one_row(atoms, depth)
    if whole is not None or not groups:
        if whole is not None:
            return whole
        toks = _flatten(atoms)  # too long, with no bracket to break: as it is
        comments = [t.after for t in toks if t.after]  # at most one: only brackets hold several
        return [*(Row(depth, "", c) for c in toks[0].before), Row(depth, _join(toks), "  ".join(comments) or None)]
    blocked = [i for i in groups if not _fits_one_row(_flatten([atoms[i]]))
               or atoms[i].open.after or (i == 0 and atoms[i].open.before)]
    at = blocked[0] if blocked else max(groups, key=lambda i: len(_join(_flatten([atoms[i]]))))
    group = atoms[at]
    assert isinstance(group, Group)
    rows = _render([*atoms[:at], group.open], depth)
    items = [list(item) for item in group.items]
    inner = [a for item in items for a in item]
    if inner and _ends_with_comma(inner) and not inner[-1].after:
        inner.pop()  # no trailing comma when the items share a row
    hugged = _one_row(inner, depth + 1) if inner and not group.close.before else None
    if hugged is not None:
        rows += hugged
    else:
        if items and group.open.rule in _TRAILING_COMMA_RULES and not _ends_with_comma(items[-1]):
            last = _last_tok(items[-1])
            items[-1].append(Tok("COMMA", ",", group.open.rule, last.end_line, last.end_line, last.end, last.end))
        rows += _pack(items, depth + 1)
        rows += [Row(depth + 1, "", c) for c in group.close.before]
    close = dataclasses.replace(group.close, before=[])
    return rows + _render([close, *atoms[at + 1:]], depth)


def _pack(items: list[list[Atom]], depth: int) -> list[Row | None]:
    """Items filled into rows as many as fit (as clang-format packs parameters: specs
    stay short); a comment ends its row, an item too long alone breaks on its own."""
    rows: list[Row | None] = []
    current: list[Atom] = []
    for item in items:
        first = _flatten(item[:1])[0]
        if current and (first.before or _one_row(current + item, depth) is None):
            rows += _render(current, depth)
            current = []
        current += item
        if _last_tok(item).after:
            rows += _render(current, depth)
            current = []
    return rows + (_render(current, depth) if current else [])


def _ends_with_comma(item: list[Atom]) -> bool:
    return isinstance(item[-1], Tok) and item[-1].type == "COMMA"


def _last_tok(item: list[Atom]) -> Tok:
    last = item[-1]
    return last if isinstance(last, Tok) else last.close


# ---- text -------------------------------------------------------------------------
def _emit(rows: list[Row | None]) -> str:
    out = []
    for run in _comment_runs(rows):
        for row in run:
            if row is BLANK:
                out.append("")
                continue
            code = INDENT * row.depth + row.code if row.code else INDENT * row.depth
            if row.comment is None:
                out.append(code)
            elif not row.code:
                out.append(code + row.comment)
            else:
                width = max(len(INDENT * r.depth + r.code) for r in run) if len(run) > 1 else len(code)
                out.append(code.ljust(width) + "  " + row.comment)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(line.rstrip() for line in out) + "\n" if out else ""


def _comment_runs(rows: list[Row | None]) -> Iterator[list[Row | None]]:
    """Rows split so that consecutive code rows with trailing comments form one run
    (their comments share a column); every other row is a run of its own."""
    index = 0
    while index < len(rows):
        end = index + 1
        if _trailing(rows[index]):
            while end < len(rows) and _trailing(rows[end]):
                end += 1
        yield rows[index:end]
        index = end


def _trailing(row: Row | None) -> bool:
    return row is not None and bool(row.code) and row.comment is not None


# ---- the safety check ---------------------------------------------------------------
def _check_same(text: str, result: str, tokens: list[tuple[Token, str]], comments: list[tuple[int, str]],
                filename: str) -> None:
    """The formatted text must hold the same tokens and comments, in order; a
    difference is a bug in the formatter, never the user's, and is raised as one."""
    try:
        new_tokens = _tokens(result, filename)
    except SpecError as exc:
        raise RuntimeError(f"resdsl fmt made text that does not parse: {exc}") from None
    if _essential(tokens) != _essential(new_tokens):
        raise RuntimeError("resdsl fmt changed the tokens of the spec")
    if [c for _, c in comments] != [c for _, c in _comments(result, new_tokens)]:
        raise RuntimeError("resdsl fmt moved or lost a comment")


def _essential(tokens: list[tuple[Token, str]]) -> list[tuple[str, str]]:
    """The token stream as the parser sees it, trailing commas and spacing aside."""
    out = []
    significant = [(t, r) for t, r in tokens if t.type not in _LAYOUT]
    for index, (token, _) in enumerate(significant):
        following = significant[index + 1][0].type if index + 1 < len(significant) else None
        if token.type == "COMMA" and following in _CLOSES:
            continue
        value = token.value.split(":")[0].rstrip() if token.type == "LABEL" else token.value
        out.append((token.type, value))
    return out


# ---- files ----------------------------------------------------------------------------
def read_spec(path: str) -> str:
    """The text of the spec file at ``path``, size-bounded and UTF-8 checked as ``load``
    reads it (``-`` reads standard input, bounded the same way)."""
    import sys

    from ..api import _read  # the one bounded reader of spec files
    from ..elaborate.limits import Limits

    limits = Limits()
    errors = ErrorList()
    if path == "-":
        data = sys.stdin.buffer.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            errors.add(Span("<stdin>"), f"the spec is over the limit of {limits.max_file_bytes:,} bytes",
                       hint="specs are small text files")
            errors.raise_if_any()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.add(Span("<stdin>"), f"standard input is not UTF-8 text ({exc.reason})", hint="send UTF-8")
            errors.raise_if_any()
    from pathlib import Path

    text = _read(Path(path), limits, errors)
    errors.raise_if_any()
    assert text is not None
    return text


def unified_diff(before: str, after: str, path: str) -> str:
    """What ``resdsl fmt --check`` prints for a file that would change.

    >>> print(unified_diff("a\\n", "b\\n", "x.res"), end="")
    --- x.res
    +++ x.res (formatted)
    @@ -1 +1 @@
    -a
    +b
    """
    import difflib

    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        path, f"{path} (formatted)"))
