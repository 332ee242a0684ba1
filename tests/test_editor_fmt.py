"""`resdsl fmt`: canonical, idempotent, meaning-preserving, comments kept; the repo is formatted."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resdsl
from resdsl.cli import main
from resdsl.editor.fmt import LINE_LENGTH, format_text
from resdsl.syntax.text import parse_text
from tests import fuzz
from tests.editor_specs import ROOT, UNPARSABLE, doc_blocks, res_files

SPECS = [f for f in res_files() if f not in UNPARSABLE]


def _comments(text: str) -> list[str]:
    return [m.group().rstrip() for m in re.finditer(r"#[^\n]*", text)]


def _parses(text: str) -> bool:
    try:
        parse_text(text)
    except resdsl.SpecError:
        return False
    return True


DOC_SPECS = [(where, text) for where, text in doc_blocks() if _parses(text)]


@pytest.mark.parametrize("path", SPECS)
def test_every_repo_spec_is_formatted(path):
    """CI's check: each spec in the repo is its own canonical layout (so fmt keeps its IR
    and is idempotent on it trivially; the tests below check those on changed text)."""
    text = (ROOT / path).read_text()
    assert format_text(text, path) == text, f"run: resdsl fmt -i {path}"


@pytest.mark.parametrize("path", sorted(UNPARSABLE))
def test_specs_that_do_not_parse_are_refused_with_their_error(path):
    with pytest.raises(resdsl.SpecError):
        format_text((ROOT / path).read_text(), path)


@pytest.mark.parametrize("where, text", DOC_SPECS, ids=[w for w, _ in DOC_SPECS])
def test_docs_specs_keep_meaning_and_comments_and_format_once(where, text):
    """The docs' examples keep their hand-aligned explanations; formatting them is safe."""
    formatted = format_text(text)
    assert parse_text(formatted) == parse_text(text)
    assert _comments(formatted) == _comments(text)
    assert format_text(formatted) == formatted


def _messy(text: str, rng: random.Random, comments: bool, blanks: bool = True) -> str:
    """The same spec laid out badly: another indentation unit, spacing removed or
    doubled, blank lines, arguments broken over lines inside brackets, comments."""
    unit = rng.choice([1, 2, 3, 4, 8])
    out = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        stripped = re.sub(r", ", lambda _: rng.choice([",", ", ", ",   "]), stripped)
        stripped = re.sub(r" ([-+*/]) ", lambda m: rng.choice([m.group(1), f" {m.group(1)} ", f"{m.group(1)} "]),
                          stripped)
        depth_in_brackets = 0
        pieces = []
        for char in stripped:  # break after commas inside brackets
            depth_in_brackets += (char in "([") - (char in ")]")
            pieces.append(char)
            if char == "," and depth_in_brackets > 0 and rng.random() < 0.3:
                pieces.append("\n" + " " * rng.randrange(12))
                if comments and rng.random() < 0.5:
                    pieces.insert(-1, f"  # in brackets {rng.randrange(99)}")
        stripped = "".join(pieces)
        if comments and rng.random() < 0.2:
            stripped += f"   # trailing {rng.randrange(99)}"
        if blanks and rng.random() < 0.1:
            out.append("")
        if comments and rng.random() < 0.15:
            out.append(" " * (depth * unit) + f"# own line {rng.randrange(99)}")
        out.append(" " * (depth * unit) + stripped)
    return "\n".join(out) + rng.choice(["\n", "\n\n\n", ""])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), layout=st.integers(0, 2**32 - 1))
def test_generated_specs_one_layout_whatever_the_input_layout(seed, layout):
    clean = fuzz.generate(random.Random(seed)).text()
    messy = _messy(clean, random.Random(layout), comments=False, blanks=False)  # blank lines are kept
    assert parse_text(messy) == parse_text(clean)
    formatted = format_text(messy)
    assert formatted == format_text(clean)  # canonical: the layout of the input is gone
    assert format_text(formatted) == formatted
    assert parse_text(formatted) == parse_text(clean)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), layout=st.integers(0, 2**32 - 1))
def test_generated_specs_with_comments_keep_meaning_and_comments(seed, layout):
    clean = fuzz.generate(random.Random(seed)).text()
    messy = _messy(clean, random.Random(layout), comments=True)
    formatted = format_text(messy)
    assert parse_text(formatted) == parse_text(clean)
    assert _comments(formatted) == _comments(messy)
    assert format_text(formatted) == formatted


def test_layout_rules():
    messy = (
        "import \"std/resnet\"\n"
        "network n(a:int=1,b :float= 2.0) :   # the net\n"
        "  input x:[3,8,8]\n"
        "\n\n\n"
        "  # a block\n"
        "  block b(w:int):\n"
        "\n"
        "    conv 3x3,w,stride=-1*a # trailing\n"
        "    relu\n"
        "      # indented into the block\n"
        "  let k=a+1\n"
        "  c1 :conv 3x3,8,\\\n"
        "     groups=1\n"
        "  y: stage b(8) x 2\n"
        "  add c1\n"
    )
    assert format_text(messy) == (
        'import "std/resnet"\n'
        "\n"
        "network n(a: int = 1, b: float = 2.0):  # the net\n"
        "    input x: [3, 8, 8]\n"
        "\n"
        "    # a block\n"
        "    block b(w: int):\n"
        "        conv 3x3, w, stride=-1 * a  # trailing\n"
        "        relu\n"
        "        # indented into the block\n"
        "\n"
        "    let k = a + 1\n"
        "    c1: conv 3x3, 8, groups=1\n"
        "    y: stage b(8) x 2\n"
        "    add c1\n"
    )


def test_long_lines_break_at_their_widest_bracket():
    params = ", ".join(f"p{i}: int = {i}" for i in range(12))
    args = ", ".join(f"p{i}" for i in range(8))
    text = f"network n({params}):\n    input x: [3, 8, 8]\n    block b({params}):\n        relu\n" \
           f"    y: stage b({args}, p8=p0 * p1 * p2 * p3 * p4 * p5 * p6 * p7 + p8 + p9) x 2, index=i\n"
    formatted = format_text(text)
    lines = formatted.splitlines()
    assert lines[:4] == ["network n(",  # packed into rows, with a trailing comma
                         "    p0: int = 0, p1: int = 1, p2: int = 2, p3: int = 3, p4: int = 4, p5: int = 5, p6: int = 6,",
                         "    p7: int = 7, p8: int = 8, p9: int = 9, p10: int = 10, p11: int = 11,", "):"]
    assert "    y: stage b(" in lines and "    ) x 2, index=i" in lines  # the items share a row when they fit
    assert max(len(line) for line in lines) <= LINE_LENGTH
    assert parse_text(formatted) == parse_text(text)
    assert format_text(formatted) == formatted


def test_comments_inside_brackets_stay_with_their_items():
    text = "network n(\n    a: int = 1,  # first\n    # about b\n    b: int = 2,\n):\n    input x: [3]\n    relu\n"
    assert format_text(text) == text
    squeezed = "network n(a: int = 1,  # first\n  # about b\n  b: int = 2):\n    input x: [3]\n    relu\n"
    assert format_text(squeezed) == text


def test_consecutive_trailing_comments_share_a_column():
    text = "network n:\n    input x: [3]\n    relu # a\n    fc: linear 10 # b\n"
    assert format_text(text).splitlines()[2:] == ["    relu           # a", "    fc: linear 10  # b"]


def test_comment_only_and_empty_files():
    assert format_text("") == ""
    assert format_text("# just a note\n\n\n") == "# just a note\n"


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_check_prints_a_diff_and_exits_1(tmp_path, capsys):
    spec = tmp_path / "n.res"
    spec.write_text("network n:\n  input x: [4]\n  fc: linear 2\n")
    code, out, _ = _run(["fmt", "--check", str(spec)], capsys)
    assert code == 1
    assert out.startswith(f"--- {spec}\n+++ {spec} (formatted)\n") and "+    fc: linear 2" in out
    assert spec.read_text() == "network n:\n  input x: [4]\n  fc: linear 2\n"  # --check writes nothing


def test_cli_in_place_rewrites_then_check_passes(tmp_path, capsys):
    spec = tmp_path / "n.res"
    spec.write_text("network n:\n  input x: [4]\n  fc: linear 2\n")
    assert _run(["fmt", "-i", str(spec)], capsys)[0] == 0
    assert spec.read_text() == "network n:\n    input x: [4]\n    fc: linear 2\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "n.res"]  # atomic_write left no temp file
    assert _run(["fmt", "--check", str(spec)], capsys) == (0, "", "")
    code, out, _ = _run(["fmt", str(spec)], capsys)
    assert (code, out) == (0, spec.read_text())


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.res"
    bad.write_text("network n:\n    input x: [4]\n    conv 3x3 8\n")
    code, _, err = _run(["fmt", "-i", str(bad)], capsys)
    assert code == 1 and f"{bad}:3:14: error" in err
    assert _run(["fmt", str(tmp_path / "n.yaml")], capsys)[0] == 2
    assert _run(["fmt", "--check", "-i", str(bad)], capsys)[0] == 2
    assert _run(["fmt", str(tmp_path / "missing.res")], capsys)[0] == 1


def test_fmt_and_the_language_server_import_no_torch():
    code = ("import sys; import resdsl.cli, resdsl.editor.lsp, resdsl.editor.lexer\n"
            "from resdsl.editor.workspace import Document\n"
            "text = open('resdsl/zoo/resnet50.res').read()\n"
            "resdsl.format(text); d = Document('resdsl/zoo/resnet50.res', text); d.hover(28, 8)\n"
            "d.completions(28, 5); d.symbols()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
