"""Language v2 constructs (docs/language.md section 9): each works, builds, generates code
that runs standalone, and each misuse is a located error with a hint."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import resdsl
from resdsl.backends.codegen import generate
from resdsl.graph import op_nodes, residual_units


def load(body: str, head: str = "network n", shape: str = "[4, 8, 8]", blocks: str = "", **params):
    text = f"{blocks}\n{head}:\n    input x: {shape}\n" + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    return resdsl.loads(text, **params)


def error(body: str, **kwargs) -> str:
    with pytest.raises(resdsl.SpecError) as caught:
        load(body, **kwargs)
    return str(caught.value)


def keys(net) -> list[str]:
    return list(net.build(device="meta").state_dict())


def run_standalone(net) -> None:
    """The generated file, executed on its own, computes what net.build() computes."""
    text = generate(net).text
    namespace: dict = {}
    exec(compile(text, "<generated>", "exec"), namespace)  # noqa: S102 - our own generated code
    # the network's class is written last
    cls = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)][-1]
    built, standalone = net.build().eval(), cls().eval()
    standalone.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(standalone(x), built(x))


# ---- expressions -----------------------------------------------------------------------------

@pytest.mark.parametrize("expr, value", [
    ("2 if 3 > 1 else 5", 2), ("2 if 3 < 1 else 5", 5), ("1 if 2 == 2 and not false else 4", 1),
    ("1 if 2 != 2 or 3 >= 3 else 4", 1), ("1 if 2 <= 1 else 4", 4), ("ceil(2.1)", 3), ("floor(2.9)", 2),
    ("round(2.5)", 2), ("int(7.9)", 7), ("int(-7.9) + 10", 3), ("make_divisible(32 * 0.75, 8)", 24),
    ("make_divisible(10, 8)", 16), ("channels(input) * 2", 8), ("dim(input, 1) + dim(input, -1)", 16),
])
def test_expression_values(expr, value):
    assert load(f"conv 1, {expr}").output_shape[0] == value


def test_bool_ops_short_circuit_like_python():
    # the right side would be an error (arithmetic on a bare word) if it were evaluated
    assert load("conv 1, 3 if true or word + 1 > 0 else 5").output_shape[0] == 3
    assert load("conv 1, 3 if false and word + 1 > 0 else 5").output_shape[0] == 5


@given(st.floats(min_value=0.01, max_value=5000, allow_nan=False), st.sampled_from([1, 2, 4, 8, 16]))
@settings(max_examples=200, deadline=None)
def test_make_divisible_is_torchvisions(value, divisor):
    from torchvision.models._utils import _make_divisible

    from resdsl.expr import evaluate
    from resdsl.ir import FloatLit, FuncCall, IntLit

    expr = FuncCall(func="make_divisible", args=(FloatLit(value=value), IntLit(value=divisor)))
    assert evaluate(expr, {}) == _make_divisible(value, divisor)


@pytest.mark.parametrize("expr, message", [
    ("1 if 3 else 2", "'if' needs true or false"),
    ("1 if 2 < relu else 2", "cannot use bare word 'relu'"),
    ("1 if 2 == true else 2", "cannot compare 2 (int) with true (bool)"),
    ("channels(nothere)", "no tensor labelled 'nothere' in this scope"),
    ("channels(2 + 2)", "channels() takes a tensor's label"),
    ("dim(input, 3)", "k must be an integer in [-3, 2]"),
    ("ceil(1, 2)", "ceil() takes ceil(x)"),
    ("make_divisible(8, 0)", "the divisor must be a positive integer"),
    ("sqrt(4)", "unknown function 'sqrt'"),
])
def test_expression_errors_are_located(expr, message):
    text = error(f"conv 1, {expr}")
    assert message in text and "inline.res:4:" in text and "^" in text and "hint:" in text


# ---- let and if ----------------------------------------------------------------------------------

def test_let_binds_for_the_rest_of_the_body_and_codegen_writes_its_value():
    net = load("let w = channels(input) * 3\nconv 3, w\nlet v = w // 2\nconv 1, v")
    assert net.output_shape == (6, 8, 8)
    run_standalone(net)


def test_let_may_not_rebind():
    text = error("let w = 2\nlet w = 3\nconv 1, w")
    assert "'w' is already a name in this scope" in text and "inline.res:5:9" in text


@pytest.mark.parametrize("a, expected", [(1, 8), (2, 16), (3, 4)])
def test_if_elif_else_choose_one_body(a, expected):
    body = "if a == 1:\n    conv 1, 8\nelif a == 2:\n    conv 1, 16\nelse:\n    conv 1, 4\nrelu"
    net = load(body, head="network n(a: int = 1)", a=a)
    assert net.output_shape == (expected, 8, 8)
    assert [d.op for d in op_nodes(net.graph)] == ["input", "conv", "relu"]


def test_if_adds_no_level_and_its_labels_are_the_scopes():
    net = load("if true:\n    c: conv 1, 8\nrelu\nadd c")
    assert "c.weight" in keys(net)


def test_else_without_if_and_unlabelled_if_errors():
    assert "'else' must come right after an 'if' or 'elif' body" in error("relu\nelse:\n    relu")
    assert "'elif' must come right after" in error("relu\nelif true:\n    relu")


def test_if_in_yaml():
    text = """network: "n(a: int = 2)"
input: "x: [4, 8, 8]"
body:
  - if a == 2:
      - conv 1, 8
  - else:
      - conv 1, 2
"""
    assert resdsl.loads(text, fmt="yaml").output_shape == (8, 8, 8)
    assert resdsl.loads(text, fmt="yaml", a=1).output_shape == (2, 8, 8)


def test_a_parameter_in_an_if_is_frozen_in_generated_code():
    net = load("if a > 1:\n    conv 1, 8\nrelu", head="network n(a: int = 2)")
    text = generate(net).text
    assert "if a != 2:" in text and "raise ValueError" in text


# ---- str parameters ----------------------------------------------------------------------------

def test_a_str_parameter_names_the_op_to_apply():
    head = "network n(act: str = relu)"
    assert [d.op for d in op_nodes(load("conv 1, 4\nact", head=head).graph)][-1] == "relu"
    net = load("conv 1, 4\nact", head=head, act="hardswish")
    assert [d.op for d in op_nodes(net.graph)][-1] == "hardswish"
    run_standalone(net)


def test_a_str_parameter_of_a_block_names_a_block():
    blocks = "block two(c: int):\n    conv 1, c\n    conv 1, c\n\nblock wrap(kind: str = two):\n    kind(5)\n"
    net = load("wrap", blocks=blocks)
    assert net.output_shape == (5, 8, 8)


@pytest.mark.parametrize("value, message", [
    ("nosuchop", "'act' is 'nosuchop', which is no op or block"),
])
def test_str_parameter_errors(value, message):
    text = error("act", head="network n(act: str = relu)", act=value)
    assert message in text


def test_a_str_parameter_may_list_its_words():
    head = "network n(arch: str(large, small) = large)"
    assert load("conv 1, 4 if arch == large else 2", head=head, arch="small").output_shape[0] == 2
    with pytest.raises(resdsl.SpecError, match=r"arch=medium is not a valid str \(one of large, small\)"):
        load("relu", head=head, arch="medium")
    assert "only a str parameter lists its words" in error("relu", head="network n(a: int(x, y) = 1)")


def test_str_overrides_are_words():
    with pytest.raises(resdsl.SpecError, match="is not a valid str"):
        load("act", head="network n(act: str = relu)", act="not a word")
    with pytest.raises(resdsl.SpecError, match="is not a valid str"):
        load("act", head="network n(act: str = relu)", act=3)


# ---- sequential ---------------------------------------------------------------------------------

def test_sequential_names_children_by_position_like_nn_sequential():
    net = load("features: sequential:\n    conv 3, 8\n    batchnorm\n    relu\n    conv 1, 4\nflatten\n"
               "head: sequential:\n    dropout 0.2\n    linear 3")
    assert keys(net)[:2] == ["features.0.weight", "features.0.bias"]
    assert "features.3.weight" in keys(net) and "head.1.weight" in keys(net)
    text = generate(net).text
    assert "self.features = nn.Sequential(" in text
    run_standalone(net)


def test_a_block_that_is_one_sequential_is_the_sequential():
    blocks = "block cna(c: int, s: int = 1):\n    sequential:\n        conv 3, c, stride=s, bias=false\n" \
             "        batchnorm\n        relu6\n"
    net = load("stem: cna(8, s=2)\nf: sequential:\n    cna(8)\n    cna(16)", blocks=blocks)
    assert keys(net)[:2] == ["stem.0.weight", "stem.1.weight"]
    assert "f.1.0.weight" in keys(net)
    run_standalone(net)


def test_labelled_children_of_a_sequential_keep_their_labels_as_an_ordered_dict():
    net = load("features: sequential:\n    conv0: conv 3, 8\n    norm0: batchnorm\n    relu0: relu")
    assert keys(net)[:2] == ["features.conv0.weight", "features.conv0.bias"]
    text = generate(net).text
    assert "from collections import OrderedDict" in text and '("conv0", nn.Conv2d(' in text
    run_standalone(net)


@pytest.mark.parametrize("item, what", [
    ("add input", "'add'"), ("residual:\n        conv 3, 4", "an unlabelled 'residual'"),
    ("p: parameter 4, 1, 1", "'parameter'"), ("chunk 2, 0", "'chunk' (an op without a module)"),
])
def test_a_sequential_is_a_chain(item, what):
    body = "s: sequential:\n    conv 3, 4\n    " + item.replace("\n", "\n    ")
    text = error(body)
    assert f"{what} cannot stand in a sequential body" in text and "hint: put it in a block" in text


# ---- stage options -----------------------------------------------------------------------------

BLOCKS = "block unit(c: int, stride: int = 1, p: float = 0.0):\n    residual drop_path=p:\n" \
         "        conv 3, c, stride=stride\n        batchnorm\n"


def test_stage_index_gives_each_instance_its_index():
    net = load("s: stage unit(4, p=0.1 * i) x 3, index=i", blocks=BLOCKS)
    rates = [d.args["drop_path"] for d in op_nodes(net.graph) if d.op == "residual_add"]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    run_standalone(net)


def test_stage_prefix_and_start_name_the_instances():
    net = load("block1: stage unit(4) x 2, prefix=denselayer, start=1", blocks=BLOCKS)
    assert {k.split(".")[1] for k in keys(net)} == {"denselayer1", "denselayer2"}
    net = load('b: stage unit(4) x 2, prefix="block1-"', blocks=BLOCKS)
    assert {k.split(".")[1] for k in keys(net)} == {"block1-0", "block1-1"}
    run_standalone(net)


def test_an_inline_stage_takes_positions_in_a_sequential():
    net = load("f: sequential:\n    conv 1, 4\n    stage unit(8) x 2, stride=2, inline=true\n    relu",
               blocks=BLOCKS)
    assert {k.split(".")[1] for k in keys(net)} == {"0", "1", "2"}
    assert net.output_shape == (8, 4, 4)
    run_standalone(net)


@pytest.mark.parametrize("options, message", [
    ("index=2", "index= takes a name"), ("prefix=2", "prefix= takes a name"),
    ('prefix="a.b"', "prefix= takes a name"), ("start=-1", "start= takes a non-negative integer"),
    ("inline=3", "inline= takes true or false"), ("inline=true, prefix=x", "an inline stage has no names"),
    ("bogus=1", "a stage has no option 'bogus'"),
])
def test_stage_option_errors(options, message):
    assert message in error(f"s: stage unit(4) x 2, {options}", blocks=BLOCKS)


# ---- residual options ------------------------------------------------------------------------------

def test_shortcut_policy_from_an_expression():
    blocks = "block inv(c: int, s: int = 1):\n" \
             "    residual shortcut=identity if s == 1 and channels(input) == c else none:\n" \
             "        conv 3, c, stride=s\n"
    net = load("inv(4)\ninv(8)\ninv(8, s=2)", blocks=blocks)
    assert [u.shortcut for u in residual_units(net.graph)] == ["identity", "none", "none"]


def test_proj_names_the_shortcut_and_shortcut_first_registers_it_first():
    body = "residual proj=proj, shortcut_first=true:\n    f: conv 3, 8, stride=2\nrelu"
    assert keys(load(body))[:3] == ["proj.0.weight", "proj.1.weight", "proj.1.bias"]
    assert keys(load("residual proj=proj:\n    f: conv 3, 8, stride=2"))[:1] == ["f.weight"]
    run_standalone(load(body))


def test_shortcut_first_in_a_block_with_and_without_a_projection():
    blocks = "block b(c: int, stride: int = 1):\n    residual proj=proj, shortcut_first=true:\n" \
             "        f: conv 3, c, stride=stride\n"
    net = load("s: stage b(8) x 2, stride=2", blocks=blocks)
    assert keys(net)[:2] == ["s.0.proj.0.weight", "s.0.proj.1.weight"]
    run_standalone(net)


@pytest.mark.parametrize("options, message", [
    ("proj=2", "proj= takes a name"), ("shortcut_first=1", "shortcut_first takes true or false"),
    ("shortcut=maybe", "unknown shortcut policy 'maybe'"),
])
def test_residual_option_errors(options, message):
    assert message in error(f"residual {options}:\n    conv 3, 4")


# ---- learnable tensors ------------------------------------------------------------------------------

def test_parameter_is_a_learnable_tensor_on_its_module():
    blocks = "block cn(c: int):\n    residual:\n        block: sequential:\n            conv 3, c, groups=c\n" \
             "            permute 1, 2, 0\n            layernorm over=last\n            linear 4 * c\n" \
             "            gelu\n            linear c\n            permute 2, 0, 1\n" \
             "        layer_scale: parameter c, 1, 1, init=1e-6\n        mul block\n"
    net = load("a: cn(4)", blocks=blocks)
    state = net.build().state_dict()
    assert list(state)[0] == "a.layer_scale" and tuple(state["a.layer_scale"].shape) == (4, 1, 1)
    assert torch.all(state["a.layer_scale"] == 1e-6)
    assert net.num_params == sum(v.numel() for k, v in state.items())
    run_standalone(net)


@pytest.mark.parametrize("stmt, message", [
    ("parameter 4, 1, 1", "a parameter needs a label"),
    ("p: parameter 0, 1", "a parameter's dimensions are positive integers"),
    ("p: parameter 4, init=relu", "init must be a number"),
    ("p: parameter 4, mean=1", "parameter has no option 'mean'"),
])
def test_parameter_errors(stmt, message):
    assert message in error(f"{stmt}\nmul input")


def test_v2_specs_have_plain_twins_render_and_analyze():
    from resdsl.analysis import analyze

    net = load("s: stage unit(4, p=0.1 * i) x 2, index=i", blocks=BLOCKS)
    plain = load("s: stage unit(4, p=0.1 * i) x 2, index=i", blocks=BLOCKS, plain=True)
    assert all(u.shortcut == "none" for u in residual_units(plain.graph))
    assert plain.num_params == net.num_params
    assert "digraph" in net.to_dot(level="block")
    assert sum(analyze(net).paths.lengths.values()) == 4  # two units: 2 x 2 paths


def test_the_section_9_examples_of_docs_language_md_parse_and_elaborate():
    """Each block example of section 9 is valid: used once in a small network, it builds."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text()
    section = text[text.index("## 9. Language version 2"):]
    bodies = [b.removeprefix("resdsl") for b in section.split("```")[1::2]]  # the fence's language, if any
    examples = [b.strip("\n") for b in bodies if b.lstrip().startswith("block")]
    assert len(examples) >= 3
    calls = {"inverted": "inverted(8)", "conv_norm_act": "conv_norm_act(8, act=hardswish)", "cn_block": "cn_block(4)",
             "encoder_layer": "encoder_layer(8, 2, 16, 0.1, gelu, 1e-5, true)"}
    shapes = {"encoder_layer": "[5, 8]"}  # a token sequence
    helper = "block conv_norm_act(out: int, k: int = 3, stride: int = 1, groups: int = 1, act: str = relu):\n" \
             "    sequential:\n        conv k, out, stride=stride, groups=groups, bias=false\n        batchnorm\n"
    checked = 0
    for example in examples:
        name = example.split("(")[0].split()[1]
        if name not in calls:  # a fragment of a zoo spec (Swin's blocks): the zoo tests build it
            continue
        checked += 1
        blocks = example + ("\n\n" + helper if name == "inverted" else "")
        net = load(calls[name], blocks=blocks, shape=shapes.get(name, "[4, 8, 8]"))
        assert net.build() is not None


def test_a_size_tuple_from_expressions():
    net = load("conv 3, 4, stride=(1, s, s)", head="network n(s: int = 2)", shape="[3, 4, 8, 8]")
    assert net.output_shape == (4, 4, 4, 4)
    assert "a size tuple holds integers" in error("conv 3, 4, stride=(1, relu)", shape="[3, 4, 8]")
    run_standalone(net)


def test_a_let_name_never_becomes_an_attribute():
    assert load("let half = channels(input) // 2\nconv 1, half").output_shape[0] == 2
    assert "is a Python keyword" in error("let lambda = 2\nrelu")


def test_repeat_runs_its_body_in_the_enclosing_scope():
    body = "features: sequential:\n    repeat k:\n        conv 3, 8\n        relu\n    maxpool 2"
    net = load(body, head="network n(k: int = 2)")
    assert keys(net) == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]
    assert load(body, head="network n(k: int = 2)", k=0).output_shape == (4, 4, 4)
    run_standalone(net)
    assert "repeat takes a count of 0 or more" in error("repeat -1:\n    relu")
    assert "is already used as a name" in error("repeat 2:\n    c: conv 1, 4")
    text = "network: n\ninput: 'x: [4, 8, 8]'\nbody:\n  - repeat 3:\n      - conv 1, 4\n"
    assert len([d for d in op_nodes(resdsl.loads(text, fmt="yaml").graph) if d.op == "conv"]) == 3


def test_repeat_work_is_bounded():
    with pytest.raises(resdsl.SpecError, match="more than 20,000 ops|takes more than"):
        load("repeat 100000:\n    repeat 100000:\n        relu")


def test_a_parameter_with_a_batch_dim_of_one_is_a_class_token_and_a_position_embedding():
    body = "p: linear 8\ncls: parameter 1, 1, 8, batch=true\nseq: concat p\n" \
           "pos: parameter 1, 6, 8, std=0.02, batch=true\nadd seq\nlinear 3"
    net = load(body, shape="[5, 8]")
    assert net.output_shape == (6, 3)
    model = net.build()
    assert tuple(model.cls.shape) == (1, 1, 8) and not model.cls.any()  # zeros, as torchvision's
    assert 0.01 < float(model.pos.detach().std()) < 0.03
    assert model(torch.randn(4, 5, 8)).shape == (4, 6, 3)  # the token expands to the batch
    run_standalone(net)


@pytest.mark.parametrize("stmt, message", [
    ("q: parameter 2, 4, batch=true\nconcat input", "write 1 first"),
    ("q: parameter 1, 4, init=1, std=1\nadd input", "constant (init=) or normal (std=), not both"),
    ("q: parameter 1, 5, 4, batch=true\nlinear 3", "reads a learnable tensor with a batch dim of one"),
])
def test_batched_parameter_errors(stmt, message):
    assert message in error(stmt, shape="[5, 4]")


def test_order_sets_the_registration_order_of_a_blocks_submodules():
    blocks = "block unit():\n    order b, a\n    a: linear 8\n    b: layernorm over=last\n"
    net = load("u: unit", shape="[6, 8]", blocks=blocks)
    assert keys(net) == ["u.b.weight", "u.b.bias", "u.a.weight", "u.a.bias"]
    run_standalone(net)


@pytest.mark.parametrize("order, message", [
    ("order a, c", "this body makes no submodule named 'c'"),
    ("order a, a", "'a' is listed twice"),
    ("order a, 2", "order takes the names of the block's submodules"),
])
def test_order_errors(order, message):
    blocks = f"block unit():\n    {order}\n    a: linear 8\n    b: layernorm over=last\n"
    with pytest.raises(resdsl.SpecError, match=message):
        load("u: unit", shape="[6, 8]", blocks=blocks)


def test_order_stands_in_a_block_body():
    assert "'order' stands once in a block or network body" in error(
        "s: sequential:\n    a: linear 8\n    order a", shape="[6, 8]")


def test_order_and_shortcut_first_in_one_block():
    """Both reorder the block's __init__: neither leaves the other with stale positions."""
    blocks = "block unit(c: int, stride: int = 1):\n    order n, f\n" \
             "    residual proj=proj, shortcut_first=true:\n        f: conv 3, c, stride=stride\n" \
             "    n: batchnorm\n"
    net = load("s: stage unit(8) x 2, stride=2", blocks=blocks)
    assert [k for k in keys(net) if k.startswith("s.0.") and k.endswith("weight")] == \
        ["s.0.n.weight", "s.0.f.weight", "s.0.proj.0.weight", "s.0.proj.1.weight"]
    run_standalone(net)
