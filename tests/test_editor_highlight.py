"""Highlighting: the Pygments lexer reads every spec without an error token; the VS Code
extension's JSON parses and its TextMate grammar is current and compiles."""

from __future__ import annotations

import json
import re
import sys

import pytest

pygments = pytest.importorskip("pygments")
from pygments import lex  # noqa: E402
from pygments.token import Error, Name  # noqa: E402

from resdsl.editor import textmate  # noqa: E402
from resdsl.editor.lexer import ResdslLexer  # noqa: E402
from resdsl.ops import REGISTRY  # noqa: E402
from tests.editor_specs import ROOT, doc_blocks, res_files  # noqa: E402

VSCODE = ROOT / "editors" / "vscode"
SOURCES = [(path, (ROOT / path).read_text()) for path in res_files()] + doc_blocks()


@pytest.mark.parametrize("where, text", SOURCES, ids=[w for w, _ in SOURCES])
def test_every_spec_lexes_without_error_tokens(where, text):
    tokens = list(lex(text, ResdslLexer()))
    assert [(t, v) for t, v in tokens if t is Error] == []


def test_labels_ops_and_calls_get_their_token_types():
    tokens = [(t, v) for t, v in lex("    conv1: conv 3x3, 64, stride=2\n    y: stage b(8) x 2\n", ResdslLexer())
              if v.strip()]
    assert tokens[0] == (Name.Label, "conv1:") and tokens[1] == (Name.Builtin, "conv")
    assert (Name.Attribute, "stride") in tokens and (Name.Function, "b") in tokens


def test_the_lexer_is_registered_under_the_name_resdsl():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pygments.lexers"]["resdsl"] == "resdsl.editor.lexer:ResdslLexer"
    assert "resdsl" in ResdslLexer.aliases and "*.res" in ResdslLexer.filenames


def test_docs_fence_their_specs_as_resdsl():
    """A plain ``` block that parses as a whole spec should say ```resdsl."""
    import resdsl
    from resdsl.syntax.text import parse_text

    unmarked = []
    for where, text in doc_blocks(""):
        if text.lstrip().startswith(("network", "block", "import")):
            try:
                parse_text(text)
            except resdsl.SpecError:
                continue
            unmarked.append(where)
    assert unmarked == []
    assert len(doc_blocks()) >= 10


def test_vscode_extension_files():
    package = json.loads((VSCODE / "package.json").read_text())
    (grammar,) = package["contributes"]["grammars"]
    assert (VSCODE / grammar["path"]).is_file() and grammar["scopeName"] == "source.resdsl"
    (language,) = package["contributes"]["languages"]
    assert language["extensions"] == [".res"] and (VSCODE / language["configuration"]).is_file()
    json.loads((VSCODE / "language-configuration.json").read_text())
    assert "vscode-languageclient" in package["dependencies"]
    script = (VSCODE / package["main"]).read_text()
    assert '"lsp"' in script and "LanguageClient" in script


def test_the_textmate_grammar_is_current_and_its_regexes_compile():
    """Every pattern is also valid Python ``re`` (the grammar uses no Oniguruma-only syntax,
    so none is skipped); the file is what resdsl.editor.textmate makes from the vocabularies."""
    path = VSCODE / "syntaxes" / "resdsl.tmLanguage.json"
    assert path.read_text() == textmate.text(), "python -m resdsl.editor.textmate > " + str(path.relative_to(ROOT))
    grammar = json.loads(path.read_text())
    patterns = grammar["patterns"]
    for pattern in patterns:
        re.compile(pattern["match"])
    ops = next(p for p in patterns if p.get("name") == "support.function.op.resdsl")["match"]
    assert all(re.search(ops, name) for name, op in REGISTRY.items() if not op.internal)
    label = re.compile(next(p for p in patterns if "captures" in p and "entity.name.label.resdsl" in str(p))["match"])
    assert label.match("    conv1: conv 3x3, 64") and not label.match("    residual:") \
        and not label.match("    width: int = 1,")
