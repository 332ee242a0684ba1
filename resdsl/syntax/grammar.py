"""The Lark parser for resdsl: built once per process, never cached on disk.

Lark's ``cache=True`` keeps pickled tables under a predictable name in the shared
temporary directory and unpickles whatever it finds there, so a file planted by
another user ran code, and a planted symlink made resdsl overwrite its target
(issue 12). Building the tables costs about 0.05 s of CPU, under a tenth of a
``resdsl check`` run, so there is no disk cache at all: nothing to plant, nothing
to verify.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Iterator

from lark import Lark, Token
from lark.exceptions import LarkError
from lark.indenter import Indenter

GRAMMAR_FILE = "resdsl.lark"  # next to this module

START_RULES = [
    "start",
    "yaml_signature",
    "yaml_input",
    "yaml_simple",
    "yaml_head",
    "yaml_defaults",
    "yaml_import",
]


class IndentationProblem(LarkError):
    """A tab in indentation, or a dedent to a column no block opened at."""

    def __init__(self, message: str, token: Token, column: int):
        super().__init__(message)
        self.message = message
        self.line = (token.end_line or token.line or 1)
        self.column = column


class SpecIndenter(Indenter):
    """Python-style INDENT/DEDENT tokens; tabs in indentation are errors, not 8 spaces."""

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token: Token) -> Iterator[Token]:
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        if "\t" in indent_str:
            raise IndentationProblem(
                "tab in indentation", token, indent_str.index("\t") + 1
            )
        indent = len(indent_str)
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, indent_str, token)
            return
        while indent < self.indent_level[-1]:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, indent_str, token)
        if indent != self.indent_level[-1]:
            raise IndentationProblem(
                f"this line is indented to column {indent + 1}, which matches no "
                f"enclosing block (expected column {self.indent_level[-1] + 1})",
                token,
                indent + 1,
            )

    def _process(self, stream: Iterator[Token]) -> Iterator[Token]:
        # Lark's version asserts on unbalanced parentheses; the parser reports those
        # itself with a position, so clamp instead of asserting.
        token = None
        for token in stream:
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
            else:
                yield token
            if token.type in self.OPEN_PAREN_types:
                self.paren_level += 1
            elif token.type in self.CLOSE_PAREN_types:
                self.paren_level = max(0, self.paren_level - 1)
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            if token is not None:
                yield Token.new_borrow_pos(self.DEDENT_type, "", token)
            else:
                yield Token(self.DEDENT_type, "", 0, 1, 1, 1, 1, 0)


def grammar_text() -> str:
    """The grammar, package data of :mod:`resdsl.syntax` (one place, installed or not)."""
    return resources.files(__package__).joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def get_parser() -> Lark:
    """The LALR parser with a contextual lexer, built in memory (see the module note)."""
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        postlex=SpecIndenter(),
        propagate_positions=True,
        maybe_placeholders=True,
        start=START_RULES,
        cache=False,  # never a pickle from a shared directory
    )
