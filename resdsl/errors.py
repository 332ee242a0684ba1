"""Located errors: every problem a spec can cause becomes a :class:`SpecError`.

Errors are values until the CLI prints them. A :class:`Diagnostic` carries a
:class:`Span` (file, line, column) and renders like a compiler message::

    resdsl/zoo/bad.res:14:13: error: concat 'enc9': no tensor labelled 'enc9' in this scope
       14 |     concat enc9, crop=center
          |            ^^^^
    hint: labels in scope: enc1, enc2, enc3, enc4, bottom, up4

Several independent problems travel together as one ``SpecError`` whose
``diagnostics`` list holds them all.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based line and column, end column exclusive.

    A plain value: equal when every field is, so a span can be a dictionary key.
    IR equality leaves spans out instead (:class:`resdsl.ir.IRNode`).
    """

    file: str = "<spec>"
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0

    @property
    def located(self) -> bool:
        return self.line > 0

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.located else self.file

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
        }


NOWHERE = Span()


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One located problem: where, what, and how to fix it."""

    span: Span
    message: str
    hint: str | None = None
    source_line: str | None = None
    notes: tuple[str, ...] = ()

    def render(self) -> str:
        """The compiler-style text; spec text in it is escaped (see :func:`printable`)."""
        lines = [printable(f"{self.span.where()}: error: {self.message}")]
        if self.source_line is not None and self.span.located:
            lines.extend(_caret_lines(self.span, self.source_line))
        lines.extend(printable(f"note: {note}") for note in self.notes)
        if self.hint:
            lines.append(printable(f"hint: {self.hint}"))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.span.to_dict(),
            "message": self.message,
            "hint": self.hint,
            "source_line": self.source_line,
            "notes": list(self.notes),
        }


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped as Python would write it.

    Diagnostics quote spec text and file names; printed raw to a terminal, an ANSI
    sequence (``\\x1b[2J``), a carriage return, a bidi override (U+202E) or a line
    separator (U+2028) would rewrite or hide what the user sees. Newlines between
    the lines of a diagnostic are not part of any ``text`` given here.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _caret_lines(span: Span, source_line: str) -> list[str]:
    gutter = str(span.line)
    pad = " " * len(gutter)
    # Columns count characters of the raw line (tabs count one, as the lexer does); the
    # caret is placed under the escaped text of exactly those characters.
    text = source_line.rstrip("\r\n").replace("\t", " ")
    start = min(max(span.column, 1), len(text) + 1)
    if span.end_line == span.line and span.end_column > start:
        width = span.end_column - start
    else:
        width = max(len(text) - start + 1, 1)
    width = max(1, min(width, max(len(text) - start + 1, 1)))
    before = printable(text[:start - 1])
    marked = printable(text[start - 1:start - 1 + width])
    return [
        f"{pad}  {gutter} | {before}{printable(text[start - 1:])}",
        f"{pad}  {pad} | {' ' * len(before)}{'^' * max(len(marked), 1)}",
    ]


class LineIndex:
    """Where each line of a text starts, built once, so finding a line costs a lookup.

    Lines are separated by ``\\n`` only, as the lexer counts them: ``str.splitlines``
    also splits on form feeds, ``\\v``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029,
    which would show a caret under the wrong line.

    >>> index = LineIndex("a\\fb\\nc")
    >>> index.line(2), index.position(4)
    ('c', (2, 1))
    """

    __slots__ = ("text", "starts")

    def __init__(self, text: str):
        self.text = text
        starts = [0]
        find = text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def line(self, number: int) -> str | None:
        """The 1-based line ``number`` without its ``\\n``, or None past the end."""
        if not 0 < number <= len(self.starts):
            return None
        start = self.starts[number - 1]
        end = self.starts[number] - 1 if number < len(self.starts) else len(self.text)
        return self.text[start:end]

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of the character at ``offset``."""
        offset = min(max(offset, 0), len(self.text))
        number = bisect.bisect_right(self.starts, offset)
        return number, offset - self.starts[number - 1] + 1


class SpecError(Exception):
    """Everything wrong with a spec, each problem located in its source.

    >>> import resdsl
    >>> try:
    ...     resdsl.loads("network n:\\n    input x: [3, 8, 8]\\n    conv 3x3\\n")
    ... except resdsl.SpecError as err:
    ...     print(err.diagnostics[0].span.where())
    inline.res:3:5
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        if not self.diagnostics:
            raise ValueError("SpecError needs at least one diagnostic")
        super().__init__(self.render())

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]

    def render(self) -> str:
        text = "\n\n".join(d.render() for d in self.diagnostics)
        if len(self.diagnostics) > 1:
            text += f"\n\n{len(self.diagnostics)} errors"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"errors": [d.to_dict() for d in self.diagnostics]}

    def __str__(self) -> str:
        return self.render()


@dataclass
class ErrorList:
    """Collects diagnostics during a stage, so one run reports every independent error.

    ``sources`` maps file names to their text, so carets can be drawn later.
    """

    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _seen: set[tuple[Any, ...]] = field(default_factory=set)
    limit: int = 50
    _indexes: dict[str, LineIndex] = field(default_factory=dict, repr=False)

    def add(
        self,
        span: Span,
        message: str,
        hint: str | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        if self.full:  # dropped anyway: don't look up its source line
            return
        self._append(Diagnostic(span, message, hint, self.source_line(span), tuple(notes)))

    def extend(self, error: SpecError) -> None:
        for diag in error.diagnostics:
            self._append(diag)

    def _append(self, diag: Diagnostic) -> None:
        # The same problem met again (a block body in every instance) is reported once.
        key = (diag.span.file, diag.span.line, diag.span.column, diag.message)
        if key in self._seen or len(self.diagnostics) >= self.limit:
            return
        self._seen.add(key)
        self.diagnostics.append(diag)

    def source_line(self, span: Span) -> str | None:
        index = self.line_index(span.file) if span.located else None
        return index.line(span.line) if index is not None else None

    def line_index(self, file: str) -> LineIndex | None:
        """The file's line index, built on first use (and again if its text was replaced)."""
        text = self.sources.get(file)
        if text is None:
            return None
        index = self._indexes.get(file)
        if index is None or index.text is not text:
            index = self._indexes[file] = LineIndex(text)
        return index

    @property
    def full(self) -> bool:
        """True once the cap is reached: callers skip building diagnostics that would be dropped."""
        return len(self.diagnostics) >= self.limit

    def __bool__(self) -> bool:
        return bool(self.diagnostics)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise SpecError(self.diagnostics)


class UsageError(Exception):
    """A request that cannot be met, though no spec line is at fault (a flag, a path,
    a batch too big for memory): the CLI prints it and exits 2."""


class Problem(Exception):
    """Raised inside a stage for one located problem; the stage records it and moves on."""

    def __init__(
        self,
        span: Span,
        message: str,
        hint: str | None = None,
        notes: Iterable[str] = (),
    ):
        super().__init__(message)
        self.span = span
        self.message = message
        self.hint = hint
        self.notes = tuple(notes)


#: difflib compares every candidate, quadratically in the names' lengths: 6,000 similar
#: block names cost 80 ms a hint, 200 random 64-letter ones 66 ms. Beyond these sizes a
#: hint suggests only names one edit away, found without scanning the pool.
MAX_FUZZY_POOL = 100
MAX_FUZZY_NAME = 24
MAX_HINT_NAME = 64
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or listing the few there are.

    >>> did_you_mean("blokc7", [f"block{n}" for n in range(1000)])
    "did you mean 'block7'?"
    """
    import difflib

    pool = set(candidates)
    if len(name) > MAX_HINT_NAME:
        close = []
    elif len(pool) > MAX_FUZZY_POOL or len(name) > MAX_FUZZY_NAME:
        close = sorted(_one_edit(name) & pool)
    else:
        # A ratio of 0.6 needs the lengths within a factor of 2.3: longer names cannot match.
        near = sorted(c for c in pool if len(c) <= 3 * MAX_FUZZY_NAME)
        close = difflib.get_close_matches(name, near, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if pool and len(pool) <= 12:
        return "expected one of: " + ", ".join(sorted(pool))
    return None


def _one_edit(name: str) -> set[str]:
    """Every identifier one deletion, transposition, replacement or insertion away."""
    splits = [(name[:i], name[i:]) for i in range(len(name) + 1)]
    edits = {a + b[1:] for a, b in splits if b}
    edits |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    edits |= {a + c + b[1:] for a, b in splits if b for c in _NAME_CHARS}
    edits |= {a + c + b for a, b in splits for c in _NAME_CHARS}
    return edits
