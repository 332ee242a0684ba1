"""Syntax errors as located diagnostics: what the parser expected, in words, with a hint.

Lark reports the terminals it expected; these functions turn them into "an
expression", "the end of the line" and the like, locate the error (an unclosed
bracket is reported where it opens) and add a hint for the common mistakes.
"""

from __future__ import annotations

from typing import Callable, Iterable

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import ErrorList, Span
from .grammar import IndentationProblem, get_parser

Locate = Callable[[int, int, int, int], Span]


_TERMINAL_WORDS = {
    "NAME": "a name",
    "CALL_NAME": "a name followed by '('",
    "LABEL": "a label ('name:')",
    "INT": "an integer",
    "FLOAT": "a number",
    "KERNEL": "a kernel size such as 3x3",
    "STRING": 'a quoted path such as "blocks.res"',
    "_NL": "the end of the line",
    "_INDENT": "an indented body",
    "_DEDENT": "the end of the indented body",
    "$END": "the end of the file",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        term = get_parser().get_terminal(name)
        return repr(term.pattern.value)
    except (KeyError, AttributeError):
        return name


_EXPRESSION_STARTS = {"INT", "FLOAT", "KERNEL", "NAME", "CALL_NAME", "LPAR", "MINUS", "PLUS", "TRUE", "FALSE"}
_OPERATORS = {"+", "-", "*", "/", "//", "%"}


def _describe_expected(expected: Iterable[str]) -> str:
    expected = set(expected)
    words: set[str] = set()
    if len(expected & _EXPRESSION_STARTS) >= 3:
        words.add("an expression")
        expected -= _EXPRESSION_STARTS
    described = {_describe_terminal(e) for e in expected}
    operators = {w for w in described if w.strip("'") in _OPERATORS}
    if len(operators) >= 3:
        described = (described - operators) | {"an operator"}
    words |= described
    ordered = sorted(words)
    if len(ordered) > 8:
        ordered = ordered[:8] + ["..."]
    return ", ".join(ordered)


def syntax_diagnostic(
    exc: Exception, text: str, locate: Locate, errors: ErrorList
) -> None:
    """Turn a Lark exception into one located, friendly diagnostic."""
    lines = _lines(text)
    last_line = len(lines)

    def at(line: int, column: int, width: int = 1) -> Span:
        line = min(max(line or 1, 1), last_line)
        column = max(column or 1, 1)
        return locate(line, column, line, column + width)

    if isinstance(exc, IndentationProblem):
        errors.add(
            at(exc.line, exc.column),
            exc.message,
            hint="indent with spaces only (4 per level is usual)"
            if "tab" in exc.message
            else "align this line with the statements of its block",
        )
        return
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        errors.add(
            at(exc.line, exc.column),
            f"unexpected character {char!r}",
            hint="names are letters, digits and '_'; numbers, 3x3 kernels and "
            "+ - * / // % ( ) [ ] , = : are the only other symbols",
        )
        return
    if isinstance(exc, UnexpectedToken) and not isinstance(exc, UnexpectedEOF):
        token: Token = exc.token
        expected = _describe_expected(exc.expected)
        unclosed = _unclosed_bracket(text)
        if unclosed is not None and token.type in ("_DEDENT", "$END", "_NL"):
            line, column, char = unclosed
            errors.add(at(line, column), f"'{char}' is never closed",
                       hint=f"add the matching '{_CLOSING[char]}'")
            return
        if token.type == "_INDENT":
            indent_line = (token.end_line or token.line or 1)
            errors.add(
                at(indent_line, len(token.value) + 1),
                "unexpected indentation",
                hint="only 'network', 'block', 'residual' and 'shortcut' lines ending in ':' open an indented body",
            )
            return
        if token.type == "_DEDENT":
            errors.add(at(token.line, token.column), f"the indented body ended early; expected {expected}",
                       hint="a body needs at least one statement")
            return
        if token.type in ("_NL", "$END"):
            line, column = token.line or last_line, token.column or len(lines[-1]) + 1
            if token.type == "_NL":
                # Point just past the line's text, not at a comment or the newline itself.
                column = len(lines[line - 1].split("#", 1)[0].rstrip()) + 1
            errors.add(at(line, column), f"the line ended too early; expected {expected}",
                       hint=_hint_for(exc.expected))
            return
        width = max(len(str(token.value)), 1)
        if "COMMA" in exc.expected and token.type in _EXPRESSION_STARTS | {"LABEL"}:
            errors.add(
                at(token.line, token.column, width),
                f"missing ',' before {str(token.value)!r}",
                hint="separate arguments with commas: 'conv 3x3, 64, stride=2'",
            )
            return
        errors.add(
            at(token.line, token.column, width),
            f"unexpected {str(token.value)!r}; expected {expected}",
            hint=_hint_for(exc.expected),
        )
        return
    if isinstance(exc, UnexpectedEOF):
        errors.add(at(last_line, len(lines[-1]) + 1),
                   f"unexpected end of input; expected {_describe_expected(exc.expected)}",
                   hint="close every '(' and '[' and finish the statement")
        return
    if isinstance(exc, UnexpectedInput):
        errors.add(at(getattr(exc, "line", 1), getattr(exc, "column", 1)), "syntax error")
        return
    raise exc


_CLOSING = {"(": ")", "[": "]"}


def _lines(text: str) -> list[str]:
    """The lines as the lexer counts them: split at '\\n' only (str.splitlines also
    splits at form feeds, U+2028 and others, which would shift line numbers)."""
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return lines


def _unclosed_bracket(text: str) -> tuple[int, int, str] | None:
    """Line, column and character of the innermost bracket left open, if any."""
    stack: list[tuple[int, int, str]] = []
    for number, line in enumerate(_lines(text), 1):
        for column, char in enumerate(line.split("#", 1)[0], 1):
            if char in _CLOSING:
                stack.append((number, column, char))
            elif char in ")]" and stack and _CLOSING[stack[-1][2]] == char:
                stack.pop()
    return stack[-1] if stack else None


def _hint_for(expected: Iterable[str]) -> str | None:
    expected = set(expected)
    if "COLON" in expected:
        return "a 'network', 'block', 'residual' or 'shortcut' line ends with ':'"
    if expected & {"INT", "NAME", "KERNEL"}:
        return "arguments are expressions separated by commas: 'conv 3x3, 64, stride=2'"
    if "RPAR" in expected or "RSQB" in expected:
        return "close every '(' and '['"
    return None
