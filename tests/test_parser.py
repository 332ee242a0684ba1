"""The text grammar and the IR it produces."""

from __future__ import annotations

import pytest

import resdsl
from resdsl import ir
from resdsl.errors import SpecError
from resdsl.syntax.text import parse_text


def net_ir(body: str, header: str = "network n:\n    input x: [3, 8, 8]\n") -> ir.Network:
    return parse_text(header + body, "t.res").networks[0]


def test_comments_blank_lines_and_trailing_text():
    network = net_ir("    # a comment\n\n    conv 3x3, 8   # trailing\n    relu\n")
    assert [s.name for s in network.body] == ["conv", "relu"]


def test_kernel_literals_and_positional_then_keyword_arguments():
    stmt = net_ir("    conv 1x7, 8, stride=2, groups=1\n").body[0]
    assert stmt.args[0].value == ir.KernelLit(dims=(1, 7))
    assert [a.name for a in stmt.args] == [None, None, "stride", "groups"]


def test_labels_may_equal_op_names():
    stmt = net_ir("    maxpool: maxpool 3x3, stride=2, pad=1\n").body[0]
    assert (stmt.label, stmt.name) == ("maxpool", "maxpool")


def test_parenthesised_call_form_and_multiline_arguments():
    body = "    a: conv(3x3, 8,\n            stride=1)\n    relu()\n"
    stmts = net_ir(body).body
    assert stmts[0].name == "conv" and len(stmts[0].args) == 3
    assert stmts[1].name == "relu"


def test_network_without_parentheses_and_top_level_blocks_shared():
    text = (
        "block unit(out: int):\n    conv 3x3, out\n    relu\n\n"
        "network a:\n    input x: [3, 8, 8]\n    unit(4)\n\n"
        "network b(width: int = 6):\n    input x: [3, 8, 8]\n    unit(width)\n"
    )
    spec = parse_text(text, "t.res")
    assert [b.name for b in spec.blocks] == ["unit"]
    assert [n.name for n in spec.networks] == ["a", "b"]
    assert resdsl.loads(text, network="a").output_shape == (4, 8, 8)
    assert resdsl.loads(text, network="b").output_shape == (6, 8, 8)
    with pytest.raises(SpecError, match="defines 2 networks"):
        resdsl.loads(text)


def test_stage_residual_shortcut_and_refs():
    body = (
        "    block unit(out: int, stride: int = 1):\n        conv 3x3, out, stride=stride\n"
        "    s: stage unit(8) x 2, stride=2\n"
        "    res: residual shortcut=A, drop_path=0.1, scale=0.5:\n        conv 3x3, 8\n"
        "    residual:\n        conv 3x3, 16\n    shortcut:\n        conv 1x1, 16\n"
        "    concat s, crop=center\n    from input\n"
    )
    network = net_ir(body)
    stage, labelled, explicit, concat, switch = network.body
    assert isinstance(stage, ir.Stage) and stage.count == ir.IntLit(value=2)
    assert stage.options[0].name == "stride"
    assert isinstance(labelled, ir.Residual) and labelled.label == "res"
    assert [o.name for o in labelled.options] == ["shortcut", "drop_path", "scale"]
    assert explicit.shortcut is not None and explicit.shortcut[0].name == "conv"
    assert (concat.kind, concat.target, concat.options[0].name) == ("concat", "s", "crop")
    assert (switch.kind, switch.target) == ("from", "input")


def test_spans_point_at_the_source():
    stmt = net_ir("    conv1: conv 3x3, 8\n").body[0]
    assert (stmt.span.file, stmt.span.line, stmt.span.column) == ("t.res", 3, 5)
    assert (stmt.name_span.line, stmt.name_span.column) == (3, 12)
    assert stmt.args[1].span.column == 22


def test_ir_is_frozen_and_strict():
    stmt = net_ir("    relu\n").body[0]
    with pytest.raises(Exception):
        stmt.name = "gelu"
    with pytest.raises(Exception):
        ir.Apply(name="relu", colour="red")


def test_import_statement_is_parsed():
    spec = parse_text('import "blocks/common.res"\nnetwork n:\n    input x: [3]\n    relu\n', "t.res")
    assert spec.imports[0].path == "blocks/common.res"


@pytest.mark.parametrize(
    "body, line, column, message",
    [
        ("    conv 3x3, 8,\n", 3, 17, "ended too early"),
        ("    conv 3x3 8\n", 3, 14, "missing ','"),
        ("    relu $\n", 3, 10, "unexpected character '$'"),
        ("        relu\n", 3, 9, "unexpected indentation"),
        ("    residual:\n        relu\n      relu\n", 5, 7, "matches no enclosing block"),
        ("    conv(3x3, 8\n", 3, 9, "'(' is never closed"),
        ("    a: conv 3x3, 8 b: relu\n", 3, 20, "missing ','"),
    ],
)
def test_syntax_errors_are_located(body, line, column, message):
    with pytest.raises(SpecError) as info:
        net_ir(body)
    diag = info.value.first
    assert (diag.span.line, diag.span.column) == (line, column), diag.render()
    assert message in diag.message


def test_syntax_error_renders_caret_under_the_token():
    with pytest.raises(SpecError) as info:
        net_ir("    conv 3x3 8\n")
    rendered = str(info.value)
    assert "t.res:3:14: error: missing ','" in rendered
    assert "   3 |     conv 3x3 8\n     |              ^" in rendered
    assert "hint:" in rendered


def test_bad_parameter_type_and_duplicates_in_signature():
    with pytest.raises(SpecError) as info:
        parse_text("network n(a: string = 1, a: int = 2):\n    input x: [3]\n    relu\n", "t.res")
    messages = [d.message for d in info.value.diagnostics]
    assert any("unknown parameter type 'string'" in m for m in messages)
    assert any("declared twice" in m for m in messages)
