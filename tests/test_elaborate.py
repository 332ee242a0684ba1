"""Elaboration rules: parameters, defaults, blocks, stages, shortcuts, long skips, names."""

from __future__ import annotations

import dataclasses

import pytest

import resdsl
from resdsl.errors import SpecError
from resdsl.graph import EDGE_KINDS, OpNode, containers, op_edge, op_edges, op_node, op_nodes, residual_units


def load(body: str, shape: str = "[8, 16, 16]", params: str = "", **kwargs) -> resdsl.Net:
    header = f"network t{params}:\n    input x: {shape}\n"
    return resdsl.loads(header + body, "t.res", **kwargs)


def node_by_module(net: resdsl.Net, module: str) -> OpNode:
    for data in op_nodes(net.graph):
        if data.module == module:
            return data
    raise KeyError(module)


def modules(net: resdsl.Net) -> list[str]:
    return [d.module for d in op_nodes(net.graph) if d.module]


def test_unlabelled_statements_get_deterministic_names():
    net = load("    conv 3x3, 8\n    relu\n    conv 3x3, 8\n    relu\n    conv_1: conv 1x1, 8\n")
    # The automatic name skips 'conv_1', which a label in the same scope takes.
    assert modules(net) == ["conv_0", "relu_0", "conv_2", "relu_1", "conv_1"]


def test_defaults_apply_to_the_rest_of_their_scope_and_inside_blocks():
    body = (
        "    block unit:\n        inner: conv 3x3, 8\n"
        "    before: conv 3x3, 8\n    defaults conv(bias=false)\n    after: conv 3x3, 8\n    u: unit\n"
    )
    net = load(body)
    assert node_by_module(net, "before").args["bias"] is True
    assert node_by_module(net, "after").args["bias"] is False
    assert node_by_module(net, "u.inner").args["bias"] is False


def test_block_defaults_override_network_defaults_inside_the_block_only():
    body = (
        "    defaults batchnorm(eps=0.001)\n"
        "    block unit:\n        defaults batchnorm(eps=0.1)\n        inner: batchnorm\n"
        "    u: unit\n    outer: batchnorm\n"
    )
    net = load(body)
    assert node_by_module(net, "u.inner").args["eps"] == 0.1
    assert node_by_module(net, "outer").args["eps"] == 0.001


def test_stage_names_instances_and_strides_only_the_first():
    body = (
        "    block unit(out: int, stride: int = 1):\n"
        "        residual:\n            conv1: conv 3x3, out, stride=stride\n"
        "    layer: stage unit(16) x 3, stride=2\n"
    )
    net = load(body)
    assert node_by_module(net, "layer.0.conv1").args["stride"] == (2, 2)
    assert node_by_module(net, "layer.2.conv1").args["stride"] == (1, 1)
    assert "layer.0.downsample.0" in modules(net)
    assert "layer.1.downsample.0" not in modules(net)
    box = containers(net.graph)["layer"]
    assert (box.kind, box.block, box.children) == ("stage", "unit", ["layer.0", "layer.1", "layer.2"])
    assert net.output_shape == (16, 8, 8)


@pytest.mark.parametrize(
    "policy, kind, extra_params, edge",
    [
        ("auto", "projection", 8 * 16 + 2 * 16, "skip-projection"),
        ("B", "projection", 8 * 16 + 2 * 16, "skip-projection"),
        ("C", "projection", 8 * 16 + 2 * 16, "skip-projection"),
        ("A", "zero-pad", 0, "skip-zero-pad"),
    ],
)
def test_shortcut_policies_when_shapes_differ(policy, kind, extra_params, edge):
    body = f"    residual shortcut={policy}:\n        conv 3x3, 16, stride=2, bias=false\n"
    net = load(body)
    (unit,) = residual_units(net.graph)
    assert unit.shortcut == kind
    assert net.num_params == 16 * 8 * 9 + extra_params
    merge = op_node(net.graph, unit.merge)
    assert merge.op == "residual_add" and merge.shape == (16, 8, 8)
    assert edge in {op_edge(net.graph, u, unit.merge).kind for u in net.graph.predecessors(unit.merge)}


def test_policy_c_projects_even_when_shapes_match_and_identity_otherwise():
    body = "    residual shortcut=C:\n        conv 3x3, 8\n    residual:\n        conv 3x3, 8\n"
    net = load(body)
    kinds = [u.shortcut for u in residual_units(net.graph)]
    assert kinds == ["projection", "identity"]
    first, second = residual_units(net.graph)
    assert op_edge(net.graph, second.input, second.merge).kind == "skip-identity"


def test_shortcut_none_and_plain_twin_keep_the_body_only():
    body = "    residual:\n        conv 3x3, 16, stride=2\n"
    assert residual_units(load(body.replace("residual", "residual shortcut=none")).graph)[0].shortcut == "none"
    plain = load(body, plain=True)
    assert [d.op for d in op_nodes(plain.graph)] == ["input", "conv"]
    assert load(body, shortcut="A").num_params == plain.num_params


def test_explicit_shortcut_path_is_named_like_sequential():
    body = (
        "    residual:\n        conv 3x3, 16, stride=2\n"
        "    shortcut:\n        avgpool 2x2\n        conv 1x1, 16, bias=false\n        proj_bn: batchnorm\n"
    )
    net = load(body)
    assert ["downsample.0", "downsample.1", "downsample.proj_bn"] == [m for m in modules(net) if "downsample" in m]
    assert residual_units(net.graph)[0].shortcut == "explicit"
    assert node_by_module(net, "downsample.0").shortcut is True


def test_labelled_residual_is_a_submodule():
    net = load("    res1: residual:\n        conv1: conv 3x3, 8\n")
    assert containers(net.graph)["res1"].kind == "residual"
    assert "res1.conv1" in modules(net)


def test_drop_path_and_scale_are_recorded_on_the_merge():
    net = load("    residual drop_path=0.2, scale=0.1:\n        conv 3x3, 8\n")
    merge = op_node(net.graph, residual_units(net.graph)[0].merge)
    assert merge.args == {"scale": 0.1, "drop_path": 0.2}


def test_last_batchnorm_of_the_body_is_remembered_for_zero_init():
    body = (
        "    residual:\n        bn_a: batchnorm\n        relu\n        conv 3x3, 16, stride=2\n"
        "        bn_b: batchnorm\n        relu\n"
    )
    unit = residual_units(load(body).graph)[0]
    assert op_node(load(body).graph, unit.last_norm).module == "bn_b"


def test_long_skips_add_mul_concat_from():
    body = (
        "    a: conv 3x3, 8\n    conv 3x3, 8\n    add a\n    mul a\n"
        "    b: conv 3x3, 4, pad=0\n    concat a, crop=center\n"
        "    m: conv 1x1, 2\n    from input\n    conv 3x3, 2, pad=0\n    concat m, crop=center\n"
    )
    net = load(body)
    kinds = {e.kind for *_, e in op_edges(net.graph)}
    assert {"long-add", "long-mul", "long-concat", "data"} <= kinds <= set(EDGE_KINDS)
    concat = [d for d in op_nodes(net.graph) if d.op == "concat"][0]
    assert concat.in_shapes == ((4, 14, 14), (8, 16, 16)) and concat.shape == (12, 14, 14)


def test_concat_inputs_keep_their_order_even_from_the_same_node():
    net = load("    a: relu\n    concat a\n")
    node = [d.id for d in op_nodes(net.graph) if d.op == "concat"][0]
    source = op_node(net.graph, node).inputs[0]
    assert op_edge(net.graph, source, node).ports == (0, 1)
    assert net.output_shape == (16, 16, 16)


@pytest.mark.parametrize(
    "shape, body, out",
    [
        ("[4, 32]", "    conv 3, 8, stride=2\n    maxpool 2\n", (8, 8)),
        ("[2, 8, 8, 8]", "    conv 3, 4\n    residual:\n        conv 3x3x3, 4\n    avgpool 2\n", (4, 4, 4, 4)),
        ("[2, 8, 8, 8]", "    upconv 2, 3\n    upsample 2, mode=linear\n", (3, 32, 32, 32)),
        ("[32]", "    residual:\n        linear 32\n        relu\n    residual:\n        linear 16\n", (16,)),
        ("[3, 9, 9]", "    conv 2x3, 4, pad=0, dilation=2\n    adaptive_avgpool 2x1\n", (4, 2, 1)),
    ],
)
def test_ranks_one_to_four(shape, body, out):
    assert load(body, shape=shape).output_shape == out


def test_flat_residual_projection_is_linear_plus_batchnorm():
    net = load("    residual:\n        linear 16\n", shape="[32]")
    ops = [(d.module, d.op) for d in op_nodes(net.graph) if d.shortcut]
    assert ops == [("downsample.0", "linear"), ("downsample.1", "batchnorm")]


def test_parameters_and_overrides_are_type_checked():
    params = "(width: int = 8, p: float = 0.5, use_bias: bool = true)"
    body = "    conv 3x3, width, bias=use_bias\n    dropout p\n"
    net = load(body, params=params, width="16", p=1, use_bias="false")
    assert net.output_shape == (16, 16, 16) and net.params == {"width": 16, "p": 1.0, "use_bias": False}
    with pytest.raises(SpecError, match="not a valid int"):
        load(body, params=params, width=2.5)
    with pytest.raises(SpecError, match="not a valid bool"):
        load(body, params=params, use_bias=1)
    with pytest.raises(SpecError, match="unknown parameter 'widht'"):
        load(body, params=params, widht=3)


def test_block_parameters_are_type_checked_and_see_network_parameters():
    body = "    block unit(out: int):\n        conv 3x3, out * k\n    unit(4)\n    unit(out=2)\n"
    assert load(body, params="(k: int = 2)").output_shape == (4, 16, 16)
    with pytest.raises(SpecError, match="must be int"):
        load("    block unit(out: int):\n        conv 3x3, out\n    unit(2.5)\n")


def test_graph_nodes_carry_the_documented_attributes():
    net = load("    conv1: conv 3x3, 8\n")
    data = node_by_module(net, "conv1")
    assert [f.name for f in dataclasses.fields(OpNode)] == [
        "id", "op", "args", "inputs", "in_shapes", "shape", "module", "container", "span", "stmt",
        "label", "params", "shortcut"]
    assert all(dict(net.graph.nodes(data=True))[n].keys() == {"node"} for n in net.graph)  # one attribute
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.shape = (1,)
    assert not hasattr(data, "__dict__")  # slotted
    assert data.args == {"kernel": (3, 3), "out_channels": 8, "stride": (1, 1), "pad": (1, 1),
                            "dilation": (1, 1), "groups": 1, "bias": True}
    assert (data.span.line, data.label, data.params) == (3, "conv1", 8 * 8 * 9 + 8)


def test_limits_stop_runaway_specs_with_a_location():
    body = "    block unit:\n        relu\n    stage unit x 50000\n"
    with pytest.raises(SpecError) as info:
        load(body, limits=resdsl.Limits(max_nodes=1000))
    first = info.value.first
    assert "over the limit of 1,000" in first.message and (first.span.line, first.span.column) == (5, 5)
    with pytest.raises(SpecError, match="elements per sample"):
        load("    conv 3x3, 4096\n", shape="[3, 100000, 100000]")
    with pytest.raises(SpecError, match="parameters, over the limit"):
        load("    linear 100000\n", shape="[100000]")


def test_second_projection_in_a_scope_is_downsample_1():
    body = "    residual:\n        conv 3x3, 16, stride=2\n    residual:\n        conv 3x3, 32, stride=2\n"
    names = [m for m in modules(load(body)) if m.startswith("downsample")]
    assert names == ["downsample.0", "downsample.1", "downsample_1.0", "downsample_1.1"]


def test_soft_keywords_are_valid_labels_but_keywords_are_not():
    assert load("    match: conv 3x3, 8\n    case: relu\n").output_shape == (8, 16, 16)
    with pytest.raises(SpecError, match="Python keyword"):
        load("    lambda: relu\n")


def test_groupnorm_of_single_values_is_refused():
    # Found by the fuzzer: torch refuses it at batch 1, and it always normalizes to 0.
    with pytest.raises(SpecError, match="single value"):
        load("    adaptive_avgpool 1\n    groupnorm 8\n")
