"""`resdsl lsp`: a client speaking JSON-RPC over the server's pipes, and the Document
behind it (hover, definition, completion, symbols) with its work bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")

from resdsl.editor.workspace import Document  # noqa: E402
from tests.lsp_client import LspClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNET = ROOT / "resdsl" / "zoo" / "unet.res"
EFFICIENTNET = ROOT / "resdsl" / "zoo" / "efficientnet.res"
MOBILE = ROOT / "resdsl" / "std" / "mobile.res"


def _line_of(path: Path, needle: str) -> int:
    """0-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(path.read_text().splitlines()) if needle in line)


def _at(path: Path, needle: str, within: str | None = None) -> dict:
    """The protocol position of ``within`` (or ``needle``) on the line holding ``needle``."""
    line = _line_of(path, needle)
    text = path.read_text().splitlines()[line]
    return {"line": line, "character": text.index(within or needle)}


@pytest.fixture(scope="module")
def client():
    lsp = LspClient()
    capabilities = lsp.initialize()["capabilities"]
    for provider in ("hoverProvider", "definitionProvider", "completionProvider", "documentSymbolProvider",
                     "documentFormattingProvider"):
        assert capabilities.get(provider), provider
    yield lsp
    assert lsp.close() == 0


def _doc(uri: str) -> dict:
    return {"textDocument": {"uri": uri}}


def test_a_zoo_spec_opens_clean_and_answers(client):
    uri = UNET.as_uri()
    client.open(uri, UNET.read_text())
    assert client.diagnostics(uri) == []
    hover = client.request("textDocument/hover", {**_doc(uri), "position": _at(UNET, "enc1: double_conv(64)")})
    assert hover["contents"]["kind"] == "markdown"
    assert "output [64, 568, 568]" in hover["contents"]["value"] and "37,568 parameters" in hover["contents"]["value"]
    assert "MACs" in hover["contents"]["value"]
    # a block call -> its definition; a label use (concat enc4) -> the labelled statement
    found = client.request("textDocument/definition",
                           {**_doc(uri), "position": _at(UNET, "enc1: double_conv(64)", "double_conv")})
    assert found["uri"] == uri and found["range"]["start"]["line"] == _line_of(UNET, "block double_conv")
    found = client.request("textDocument/definition", {**_doc(uri), "position": _at(UNET, "concat enc4", "enc4")})
    assert found["range"]["start"] == {"line": _line_of(UNET, "enc4: double_conv"), "character": 4}
    symbols = client.request("textDocument/documentSymbol", _doc(uri))
    assert [s["name"] for s in symbols] == ["unet"] and [c["name"] for c in symbols[0]["children"]] == ["double_conv"]


def test_definition_across_a_std_import(client):
    uri = EFFICIENTNET.as_uri()
    client.open(uri, EFFICIENTNET.read_text())
    assert client.diagnostics(uri) == []
    found = client.request("textDocument/definition",
                           {**_doc(uri), "position": _at(EFFICIENTNET, "conv_norm_act(make_divisible(32")})
    assert found["uri"] == MOBILE.resolve().as_uri()
    assert found["range"]["start"]["line"] == _line_of(MOBILE, "block conv_norm_act(")
    found = client.request("textDocument/definition", {**_doc(uri), "position": _at(EFFICIENTNET, 'import "std/mobile"',
                                                                                      "std")})
    assert found["uri"] == MOBILE.resolve().as_uri()
    symbols = client.request("textDocument/documentSymbol", _doc(uri))
    kinds = {c["name"]: c["kind"] for c in symbols[0]["children"]}
    assert len([k for k in kinds.values() if k == 18]) >= 1  # stages (SymbolKind.Array)


def test_diagnostics_while_typing_and_hover_from_the_last_good_parse(client):
    uri = "file:///tmp/resdsl-editor-test/typing.res"
    good = "network n:\n    input x: [3, 8, 8]\n    c1: conv 3x3, 4\n    relu\n"
    client.open(uri, good)
    assert client.diagnostics(uri) == []
    client.change(uri, good + "    add nope\n", 2)
    (diag,) = client.diagnostics(uri)
    assert diag["range"] == {"start": {"line": 4, "character": 8}, "end": {"line": 4, "character": 12}}
    assert diag["severity"] == 1 and "nope" in diag["message"]
    assert diag["relatedInformation"][0]["message"] == "hint: labels in scope: c1"
    client.change(uri, good + "    conv 3x3,\n", 3)  # a syntax error: the parse fails
    (diag,) = client.diagnostics(uri)
    assert diag["range"]["start"]["line"] == 4
    hover = client.request("textDocument/hover", {**_doc(uri), "position": {"line": 2, "character": 5}})
    assert "output [4, 8, 8]" in hover["contents"]["value"] and "112 parameters" in hover["contents"]["value"]
    client.change(uri, good + "    conv 3x3, 4\n    re", 4)
    client.diagnostics(uri)
    items = client.request("textDocument/completion", {**_doc(uri), "position": {"line": 5, "character": 6}})["items"]
    labels = {item["label"] for item in items}
    assert {"relu", "conv", "residual", "stage"} <= labels  # ops and statement words
    client.change(uri, good + "    add ", 5)
    client.diagnostics(uri)
    items = client.request("textDocument/completion", {**_doc(uri), "position": {"line": 4, "character": 8}})["items"]
    assert {item["label"] for item in items} == {"x", "c1"}  # the labels in scope
    client.change(uri, good + "    conv 3x3, 4, ", 6)
    client.diagnostics(uri)
    items = client.request("textDocument/completion", {**_doc(uri), "position": {"line": 4, "character": 21}})["items"]
    assert {"stride=", "groups=", "bias="} <= {item["label"] for item in items}  # conv's keyword arguments


def test_formatting_returns_the_formatted_text(client):
    uri = "file:///tmp/resdsl-editor-test/format.res"
    client.open(uri, "network n:\n  input x: [4]\n  fc : linear 2\n")
    client.diagnostics(uri)
    (edit,) = client.request("textDocument/formatting", {**_doc(uri), "options": {"tabSize": 4, "insertSpaces": True}})
    assert edit["newText"] == "network n:\n    input x: [4]\n    fc: linear 2\n"
    assert edit["range"]["start"] == {"line": 0, "character": 0}


# ---- the Document, in process: answers and their cost -------------------------------------
def test_requests_on_the_largest_zoo_spec_cost_little_cpu():
    """efficientnet_v2 is the zoo's longest spec with the most ops; a hover, a definition
    and a completion at each of its lines cost under 0.1 s of CPU together, on average
    (benchmarks/lsp.py measures each kind)."""
    path = EFFICIENTNET.parent / "efficientnet_v2.res"
    text = path.read_text()
    doc = Document(str(path), text, path.parent)
    assert doc.diagnostics == [] and doc.good is not None
    lines = text.splitlines()
    positions = [(n + 1, len(line) - len(line.lstrip()) + 2) for n, line in enumerate(lines) if line.strip()
                 and not line.lstrip().startswith("#")]
    start = time.process_time()
    for line, column in positions:
        doc.hover(line, column)
        doc.definition(line, column)
        doc.completions(line, column)
    doc.symbols()
    spent = time.process_time() - start
    assert spent < 2.0 * len(positions) / 20, f"{spent:.2f} s of CPU for {len(positions)} positions"


def test_hover_on_a_statement_inside_a_block_sums_its_instances():
    text = "network n:\n    input x: [3, 8, 8]\n    block b(w: int):\n        conv 3x3, w\n" \
           "    y: stage b(4) x 3\n"
    doc = Document("n.res", text)
    hover = doc.hover(4, 10)
    assert "3 instances" in hover and "output [4, 8, 8]" in hover
    assert "`conv kernel, out_channels" in hover  # the op's usage line
    stage = doc.hover(5, 5)
    assert "output [4, 8, 8]" in stage and f"{112 + 148 + 148:,} parameters" in stage  # 3->4, then 4->4 twice


def test_definition_of_a_parameter_and_a_let():
    text = "network n(w: int = 4):\n    input x: [3, 8, 8]\n    let k = w * 2\n    conv 3x3, k\n    conv 3x3, w\n"
    doc = Document("n.res", text)
    assert (doc.definition(4, 15).span.line, doc.definition(4, 15).span.column) == (3, 9)
    assert doc.definition(5, 15).span.line == 1
