"""The Pygments lexer for ``.res`` specs, registered as ``resdsl`` (entry point
``pygments.lexers``), so docs, Sphinx, MkDocs and ``pygmentize -l resdsl`` colour specs.

Words come from the one home of each vocabulary: statement words from
:mod:`resdsl.vocab`, op names from the catalogue (``resdsl.ops``, torch-free).

>>> from pygments import lex
>>> [t for t, v in lex("conv1: conv 3x3, 64  # stem\\n", ResdslLexer()) if v.strip()][:4]
[Token.Name.Label, Token.Name.Builtin, Token.Literal.Number, Token.Punctuation]
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from ..ops import REGISTRY
from ..vocab import FUNCTIONS, PARAM_TYPES, STATEMENT_WORDS
from .textmate import KEYWORDS

_KEYWORDS = KEYWORDS
_OPS = tuple(sorted(name for name, op in REGISTRY.items() if not op.internal))
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


class ResdslLexer(RegexLexer):
    """Lexer for resdsl specs (``.res``): residual network architectures."""

    name = "resdsl"
    aliases = ["resdsl", "res"]
    filenames = ["*.res"]
    mimetypes = ["text/x-resdsl"]
    url = "https://github.com/resdsl/resdsl"

    tokens = {
        "root": [
            # a label: a name and a colon starting a statement, more on the line (the
            # grammar's LABEL); `width: int` in a parameter list is no label
            (rf"^([ \t]*)({_IDENT}[ \t]*:)(?![ \t]*(#[^\n]*)?(\r?\n|$))(?![ \t]*({'|'.join(PARAM_TYPES)})\b)",
             bygroups(Whitespace, Name.Label)),
            (r"[ \t]+", Whitespace),
            (r"\r?\n", Whitespace),
            (r"\\[ \t]*\r?\n", Text),  # a line continuation
            (r"#[^\n]*", Comment.Single),
            (r'"[^"\n\\]*"', String.Double),
            (rf"(network|block)([ \t]+)({_IDENT})", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (rf"(let)([ \t]+)({_IDENT})", bygroups(Keyword.Declaration, Whitespace, Name.Variable)),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (words(PARAM_TYPES, suffix=r"\b(?!\()"), Keyword.Type),
            (words(_KEYWORDS, suffix=r"\b"), Keyword),
            (r"(?<=[)\w][ \t])x(?=[ \t]+[\w(])", Keyword),  # `stage b(64) x 3`; elsewhere x is a name
            (rf"{_IDENT}(?=[ \t]*=(?!=))", Name.Attribute),  # a keyword argument
            (words(tuple(w for w in STATEMENT_WORDS if w not in _KEYWORDS), suffix=r"\b"), Keyword.Reserved),
            (words(FUNCTIONS, suffix=r"(?=\()"), Name.Builtin.Pseudo),
            (rf"{_IDENT}(?=\()", Name.Function),
            (words(_OPS, suffix=r"\b"), Name.Builtin),
            (_IDENT, Name),
            (r"[0-9]+(x[0-9]+)+(?![A-Za-z0-9_])", Number),  # a kernel: 3x3
            (r"[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|\.[0-9]+([eE][+-]?[0-9]+)?", Number.Float),
            (r"[0-9]+", Number.Integer),
            (r"==|!=|<=|>=|//|[-+*/%<>=]", Operator),
            (r"[()\[\],:]", Punctuation),
        ],
    }
