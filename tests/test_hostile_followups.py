"""Regressions from a second attack on the issue-12 fixes: statements folded over several
YAML lines, control characters in what the CLI prints, and the CLI's op limit."""

from __future__ import annotations

from pathlib import Path

import pytest

import resdsl
from resdsl import SpecError
from resdsl.cli import main
from resdsl.graph import op_nodes

HEAD = 'network: "n"\ninput: "x: [4, 8]"\nbody:\n'


def _where(text: str) -> tuple[int, int, str]:
    with pytest.raises(SpecError) as info:
        resdsl.loads(text, "f.yaml", fmt="yaml")
    diag = info.value.diagnostics[0]
    line = text.split("\n")[diag.span.line - 1]
    return diag.span.line, diag.span.column, line[diag.span.column - 1:diag.span.end_column - 1]


@pytest.mark.parametrize("item", [
    "  - >-\n    conv 1,\n    4,\n    zzz=2\n",  # folded block scalar
    "  - |\n    conv 1,\n    4,\n    zzz=2\n",  # literal block scalar
    "  - conv 1,\n    4,\n    zzz=2\n",  # plain scalar over three lines
    '  - "conv 1,\n    4,\n    zzz=2"\n',  # double-quoted over three lines
    "  - 'conv 1,\n    4,\n    zzz=2'\n",  # single-quoted over three lines
], ids=["folded", "literal", "plain", "double", "single"])
def test_a_statement_folded_over_lines_is_located_at_the_character(item):
    """The caret was on the scalar's first line, at columns past its end."""
    text = HEAD + item
    expected = next(n for n, line in enumerate(text.split("\n"), 1) if "zzz" in line)
    line, column, marked = _where(text)
    assert (line, column) == (expected, 5) and marked == "zzz=2"


def test_folded_syntax_errors_are_located_too():
    line, column, marked = _where(HEAD + "  - >-\n    conv 1,\n    4,,\n")
    assert (line, column) == (6, 7) and marked == ","


def test_block_scalars_parse_with_their_trailing_newline():
    """`- >` keeps a final newline in the value: it was 'the line ended too early'."""
    net = resdsl.loads(HEAD + "  - >\n    relu\n  - |\n    conv 1, 4\n", "f.yaml", fmt="yaml")
    assert [data.op for data in op_nodes(net.graph)][1:] == ["relu", "conv"]


def test_paths_are_printed_with_control_characters_escaped(tmp_path, capsys):
    odd = tmp_path / "\x1b[31m\u202ed.res"
    odd.mkdir()
    assert main(["check", str(odd)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\u202e" not in err
    assert "\\x1b[31m\\u202ed.res" in err and "a directory" in err


def test_written_paths_are_escaped(tmp_path, capsys):
    spec = tmp_path / "n.res"
    spec.write_text("network n:\n    input x: [4]\n    fc: linear 2\n")
    out = tmp_path / "\x1b]0;title\x07.dot"
    assert main(["render", str(spec), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and "\x1b" not in printed and "\x07" not in printed


def test_max_nodes_on_the_command_line(tmp_path, capsys):
    spec = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "resnet18.res"
    assert main(["check", str(spec), "--max-nodes", "50"]) == 1
    assert "more than 50 ops" in capsys.readouterr().err
    assert main(["check", str(spec), "--max-nodes", "100"]) == 0
    assert main(["check", str(spec), "--max-nodes", "0"]) == 2


def test_labels_are_shortened_before_graphviz_lays_them_out():
    """A 13,000-character network name made a 32,767 x 15,842 pixel PNG (2 GB, 14 s)."""
    import re

    from resdsl.render.dot import MAX_LABEL_CHARS

    name = "n" * 13_000
    net = resdsl.loads(f"network {name}:\n    input x: [4, 8]\n    block b:\n        relu\n"
                       "    layer: stage b x 3\n")
    dot = net.to_dot(level="layer")
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', dot)
    assert quoted and max(len(part) for q in quoted for part in q.split("\\n")) <= MAX_LABEL_CHARS
    assert name[:50] in dot and name not in dot


@pytest.mark.parametrize("value", ["1_000", "+3", "\u0663", "\uff13", "0x10", " 3 3"])
def test_overrides_are_spelled_as_spec_numbers(value):
    """-D took whatever Python's int() takes: digit separators, a plus sign, Unicode digits."""
    spec = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "cifar_resnet.res"
    with pytest.raises(SpecError, match="is not a valid int"):
        resdsl.load(spec, n=value)
    assert resdsl.load(spec, n="3").params["n"] == 3 and resdsl.load(spec, n=" 3 ").params["n"] == 3


@pytest.mark.parametrize("digits", [25, 5000])
def test_an_override_of_thousands_of_digits_is_out_of_range(digits):
    """int() of over 4,300 digits raises ValueError (the fuzz found it after the spelling fix)."""
    spec = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "cifar_resnet.res"
    for value in ("9" * digits, "-" + "9" * digits):
        with pytest.raises(SpecError, match="out of range"):
            resdsl.load(spec, n=value)
