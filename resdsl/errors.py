"""Located errors: every problem a spec can cause becomes a :class:`SpecError`.

Errors are values until the CLI prints them. A :class:`Diagnostic` carries a
:class:`Span` (file, line, column) and renders like a compiler message::

    specs/bad.res:14:13: error: concat 'enc9': no tensor labelled 'enc9' in this scope
       14 |     concat enc9, crop=center
          |            ^^^^
    hint: labels in scope: enc1, enc2, enc3, enc4, bottom, up4

Several independent problems travel together as one ``SpecError`` whose
``diagnostics`` list holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based line and column, end column exclusive.

    Spans compare equal to each other whatever their positions, so IR nodes that
    differ only in where they were written (text vs YAML) compare equal.
    """

    file: str = "<spec>"
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

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
        lines = [f"{self.span.where()}: error: {self.message}"]
        if self.source_line is not None and self.span.located:
            lines.extend(_caret_lines(self.span, self.source_line))
        lines.extend(f"note: {note}" for note in self.notes)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.span.to_dict(),
            "message": self.message,
            "hint": self.hint,
            "source_line": self.source_line,
            "notes": list(self.notes),
        }


def _caret_lines(span: Span, source_line: str) -> list[str]:
    gutter = str(span.line)
    pad = " " * len(gutter)
    text = source_line.rstrip("\r\n").expandtabs(1)
    start = max(span.column, 1)
    if span.end_line == span.line and span.end_column > start:
        width = span.end_column - start
    else:
        width = max(len(text) - start + 1, 1)
    width = max(1, min(width, max(len(text) - start + 1, 1)))
    return [
        f"{pad}  {gutter} | {text}",
        f"{pad}  {pad} | {' ' * (start - 1)}{'^' * width}",
    ]


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

    def add(
        self,
        span: Span,
        message: str,
        hint: str | None = None,
        notes: Iterable[str] = (),
    ) -> None:
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
        text = self.sources.get(span.file)
        if text is None or not span.located:
            return None
        lines = text.splitlines()
        return lines[span.line - 1] if 0 < span.line <= len(lines) else None

    @property
    def full(self) -> bool:
        """True once the cap is reached: callers skip building diagnostics that would be dropped."""
        return len(self.diagnostics) >= self.limit

    def __bool__(self) -> bool:
        return bool(self.diagnostics)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise SpecError(self.diagnostics)


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


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or listing the few there are."""
    import difflib

    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if pool and len(pool) <= 12:
        return "expected one of: " + ", ".join(pool)
    return None
