"""The TextMate grammar of ``.res`` (VS Code, Sublime, GitHub's linguist), made from the
vocabularies' one home, so a new op or statement word is coloured without editing JSON.

``python -m resdsl.editor.textmate`` prints it; ``editors/vscode/syntaxes/resdsl.tmLanguage.json``
is its output (a test checks that the file is current).

>>> grammar()["scopeName"]
'source.resdsl'
"""

from __future__ import annotations

import json
from typing import Any

from ..ops import REGISTRY
from ..vocab import FUNCTIONS, PARAM_TYPES, STATEMENT_WORDS

KEYWORDS = ("network", "block", "input", "import", "defaults", "let", "if", "elif", "else", "repeat", "stage",
            "and", "or", "not")
_IDENT = "[A-Za-z_][A-Za-z0-9_]*"


def _alternatives(names: Any) -> str:
    return "|".join(sorted(names))


def grammar() -> dict[str, Any]:
    """The grammar as a JSON-ready dict; patterns are tried in order, first match wins."""
    ops = (name for name, op in REGISTRY.items() if not op.internal)
    reserved = (w for w in STATEMENT_WORDS if w not in KEYWORDS)
    types = _alternatives(PARAM_TYPES)
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "resdsl",
        "scopeName": "source.resdsl",
        "fileTypes": ["res"],
        "patterns": [
            {"name": "comment.line.number-sign.resdsl", "match": "#.*$"},
            {"name": "string.quoted.double.resdsl", "match": '"[^"\\\\]*"'},
            {"match": f"\\b(network|block)\\s+({_IDENT})",
             "captures": {"1": {"name": "storage.type.resdsl"}, "2": {"name": "entity.name.type.resdsl"}}},
            {"match": f"\\b(let)\\s+({_IDENT})",
             "captures": {"1": {"name": "storage.type.resdsl"}, "2": {"name": "variable.other.resdsl"}}},
            # a label: a name and a colon starting a statement with more on the line
            {"match": f"^\\s*({_IDENT})\\s*:(?!\\s*(#.*)?$)(?!\\s*({types})\\b)",
             "captures": {"1": {"name": "entity.name.label.resdsl"}}},
            {"name": "constant.language.boolean.resdsl", "match": "\\b(true|false)\\b"},
            {"name": "keyword.control.resdsl", "match": f"\\b({_alternatives(KEYWORDS)})\\b"},
            {"name": "keyword.other.statement.resdsl", "match": f"\\b({_alternatives(reserved)})\\b"},
            {"name": "keyword.operator.repeat.resdsl", "match": "(?<=[)\\w]\\s)x(?=\\s+[\\w(])"},
            {"name": "support.type.resdsl", "match": f"\\b({types})\\b(?!\\()"},
            {"name": "support.function.builtin.resdsl", "match": f"\\b({_alternatives(FUNCTIONS)})(?=\\()"},
            {"name": "entity.name.function.call.resdsl", "match": f"\\b{_IDENT}(?=\\()"},
            {"name": "variable.parameter.keyword.resdsl", "match": f"\\b{_IDENT}(?=\\s*=(?!=))"},
            {"name": "support.function.op.resdsl", "match": f"\\b({_alternatives(ops)})\\b"},
            {"name": "constant.numeric.kernel.resdsl", "match": "\\b[0-9]+(x[0-9]+)+\\b"},
            {"name": "constant.numeric.float.resdsl",
             "match": "\\b([0-9]+\\.[0-9]*([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)|\\.[0-9]+([eE][+-]?[0-9]+)?"},
            {"name": "constant.numeric.integer.resdsl", "match": "\\b[0-9]+\\b"},
            {"name": "keyword.operator.resdsl", "match": "==|!=|<=|>=|//|[-+*/%<>=]"},
            {"name": "punctuation.separator.resdsl", "match": "[,:]"},
            {"name": "punctuation.bracket.resdsl", "match": "[()\\[\\]]"},
        ],
    }


def text() -> str:
    """The grammar file's exact text."""
    return json.dumps(grammar(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(text(), end="")
