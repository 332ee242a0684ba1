"""One op, one entry: a new op is one `register_op` call, and every pass reads the entry.

docs/extending.md's example (Lp pooling) is run from the document itself, so the
document cannot drift from what works. The registry walk requires every entry to
declare every field that a pass reads.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import resdsl
from resdsl.backends.codegen import generate
from resdsl.ops import (
    ANNOTATION, BOX, CATEGORIES, GLOBAL, POINTWISE, REGISTRY, Diagram, OpSpec, Window, bind, field_of, registered,
    user_ops,
)
from resdsl.ops.base import entry_problem
from resdsl.ops.shortcut import PROJECTIONS, projection
from resdsl.analysis.report import analyze, node_macs, receptive_fields
from resdsl.graph import op_node, op_nodes
from resdsl.render import to_dot

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"

POOLED = """
network n:
    input x: [3, 17, 17]
    conv 3x3, 4
    pool: lppool 3x3, stride=2
    conv 3x3, 4
"""


def _doc_example() -> str:
    """The first Python block of docs/extending.md: the whole op, in one file."""
    return re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


@pytest.fixture
def lppool():
    namespace: dict = {}
    exec(compile(_doc_example(), str(DOC), "exec"), namespace)
    try:
        yield namespace["LPPOOL"]
    finally:
        resdsl.unregister_op("lppool")
    assert "lppool" not in REGISTRY


def _pool_node(net: resdsl.Net) -> int:
    return next(d.id for d in op_nodes(net.graph) if d.op == "lppool")


# ---- the documented example, end to end --------------------------------------------------
def test_the_documented_op_checks_with_the_right_shape(lppool):
    net = resdsl.loads(POOLED)
    assert op_node(net.graph, _pool_node(net)).shape == (4, 8, 8)  # (17 - 3) // 2 + 1
    assert net.output_shape == (4, 8, 8)
    with pytest.raises(resdsl.SpecError, match="larger than the input"):
        resdsl.loads("network n:\n    input x: [3, 2, 2]\n    lppool 3x3\n")


def test_the_documented_op_has_its_receptive_field_and_macs(lppool):
    net = resdsl.loads(POOLED)
    fields = receptive_fields(net.graph)
    pool = _pool_node(net)
    assert fields[pool] == (5, 5)  # a pointwise default would leave the conv's 3x3
    assert fields[net.graph.graph["output"]] == (9, 9)  # 5 + (3 - 1) x jump 2
    assert analyze(net).receptive_field == (9, 9)
    assert node_macs(net.graph, pool) == 4 * 8 * 8 * 9
    assert op_node(net.graph, pool).params == 0


def test_the_documented_op_builds_runs_and_is_generated(lppool):
    net = resdsl.loads(POOLED)
    model = net.build().eval()
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        y = model(x)
        pooled = torch.nn.functional.lp_pool2d(model.conv_0(x), 2.0, 3, stride=2)
    assert tuple(y.shape) == (2, *net.output_shape)
    assert torch.allclose(model.pool(model.conv_0(x)), pooled)
    assert "self.pool = nn.LPPool2d(2.0, 3, stride=2)" in generate(net).text


def test_the_documented_op_field_matches_torch(lppool):
    """The declared window is what torch reads: the gradient of one output position."""
    net = resdsl.loads("network n:\n    input x: [1, 11, 11]\n    pool: lppool 3x3, stride=2\n")
    x = (torch.rand(1, 1, 11, 11) + 0.5).requires_grad_()
    net.build()(x)[0, 0, 2, 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    extent = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    assert extent == receptive_fields(net.graph)[net.graph.graph["output"]] == (3, 3)


def test_the_documented_op_is_drawn_with_its_label(lppool):
    net = resdsl.loads(POOLED)
    for level in ("layer", "block"):
        dot = to_dot(net.graph, level=level, shapes=False)  # the label alone, no shape line
        assert re.search(r'label="3x3 L2 pool, /2", shape=box', dot), level


def test_unregistered_the_op_is_unknown_again(lppool):
    spec = resdsl.unregister_op("lppool")
    with pytest.raises(resdsl.SpecError, match="lppool"):
        resdsl.loads(POOLED)
    with registered(spec):
        assert resdsl.loads(POOLED).output_shape == (4, 8, 8)
    assert "lppool" not in REGISTRY
    resdsl.register_op(spec)  # for the fixture to remove


# ---- the entry, not the name, decides -------------------------------------------------------
def test_a_copy_of_maxpool_keeps_its_receptive_field():
    """The old analysis tested names: a registered copy of maxpool had a 1x1 field."""
    with registered(dataclasses.replace(REGISTRY["maxpool"], name="maxpool_copy")):
        net = resdsl.loads("network n:\n    input x: [1, 16, 16]\n    maxpool_copy 4\n")
        assert receptive_fields(net.graph)[net.graph.graph["output"]] == (4, 4)


def test_a_copy_of_batchnorm_is_the_zero_init_target():
    spec = """
network n:
    input x: [4, 8, 8]
    residual:
        conv 3x3, 4
        {norm}
"""
    with registered(dataclasses.replace(REGISTRY["batchnorm"], name="bn_copy")):
        net = resdsl.loads(spec.format(norm="bn_copy"))
        unit = net.graph.graph["residuals"][0]
        assert op_node(net.graph, unit.last_norm).op == "bn_copy"
        model = net.build(zero_init_residual=True)
        assert not model.get_submodule(op_node(net.graph, unit.last_norm).module).weight.any()
    net = resdsl.loads(spec.format(norm="layernorm"))  # not a zero-init norm: nothing targeted
    assert net.graph.graph["residuals"][0].last_norm is None


def test_a_nonlinear_declaration_is_what_the_paths_count():
    text = "network n:\n    input x: [4]\n    linear 4\n    {act}\n    linear 4\n"
    counted = dataclasses.replace(REGISTRY["identity"], name="id_nonlinear", nonlinear=True)
    with registered(counted):
        assert analyze(resdsl.loads(text.format(act="id_nonlinear"))).paths.min_nonlinear == 1
    assert analyze(resdsl.loads(text.format(act="identity"))).paths.min_nonlinear == 0


def test_the_diagram_declaration_decides_folding():
    text = "network n:\n    input x: [3, 8, 8]\n    conv 3x3, 4\n    {act}\n    flatten\n    linear 2\n"
    boxed = dataclasses.replace(REGISTRY["relu"], name="relu_boxed", diagram=BOX)
    folded = to_dot(resdsl.loads(text.format(act="relu")).graph, level="block", shapes=False)
    assert 'label="3x3 conv, 4\\nrelu"' in folded
    with registered(boxed):
        drawn = to_dot(resdsl.loads(text.format(act="relu_boxed")).graph, level="block", shapes=False)
    assert 'label="3x3 conv, 4"' in drawn and 'label="relu"' in drawn


def test_the_projection_is_the_catalogue_recipe(monkeypatch):
    text = "network n:\n    input x: [4, 8, 8]\n    residual:\n        conv 3x3, 8, stride=2\n"
    ops = lambda net: [op_node(net.graph, n).op for n in net.graph.nodes if op_node(net.graph, n).shortcut]
    assert ops(resdsl.loads(text)) == ["conv", "batchnorm"]
    recipe = (PROJECTIONS["spatial"][0], ("layernorm", lambda i, t, s: {"eps": 1e-5}))
    monkeypatch.setitem(PROJECTIONS, "spatial", recipe)
    net = resdsl.loads(text)
    assert ops(net) == ["conv", "layernorm"]
    assert net.output_shape == (8, 4, 4)


# ---- registration refuses what would mislead a pass ------------------------------------------
def test_an_entry_without_a_receptive_field_cannot_be_made():
    fields = {f.name: getattr(REGISTRY["maxpool"], f.name) for f in dataclasses.fields(OpSpec)}
    del fields["receptive_field"]
    with pytest.raises(TypeError, match="receptive_field"):
        OpSpec(**fields)


@pytest.mark.parametrize("change, message", [
    ({"name": "maxpool"}, "already registered"),
    ({"name": "Max-Pool"}, "name"),
    ({"category": "pooling"}, "category"),
    ({"diagram": Diagram(kind="circle")}, "diagram"),
    ({"diagram": "op"}, "diagram"),
    ({"receptive_field": None}, "receptive_field"),
    ({"receptive_field": (3, 3)}, "receptive_field"),
    ({"nonlinear": 1}, "nonlinear"),
    ({"code": None}, "code"),
    ({"label": "max pool"}, "label"),
])
def test_register_refuses_a_malformed_entry(change, message):
    spec = dataclasses.replace(REGISTRY["maxpool"], **{"name": "pool_x", **change})
    with pytest.raises(ValueError, match=message):
        resdsl.register_op(spec)
    assert "pool_x" not in REGISTRY


def test_a_window_of_the_wrong_rank_is_refused_where_it_is_used():
    bad = dataclasses.replace(REGISTRY["maxpool"], name="pool_bad",
                              receptive_field=lambda i, o, a: Window((2,), (2,)))
    with registered(bad):
        net = resdsl.loads("network n:\n    input x: [1, 8, 8]\n    pool_bad 2\n")
        with pytest.raises(ValueError, match="pool_bad.*one entry per spatial dimension"):
            receptive_fields(net.graph)


# ---- the registry walk ---------------------------------------------------------------------
#: One use of every built-in op a spec can name: (input shape, positional, keywords).
EXAMPLES = {
    "conv": ((4, 9, 9), [3, 8], {"stride": 2, "dilation": 2}),
    "upconv": ((4, 5, 5), [3, 8], {"stride": 2}),
    "linear": ((6,), [5], {}),
    "batchnorm": ((4, 6, 6), [], {}),
    "layernorm": ((4, 6, 6), [], {}),
    "groupnorm": ((4, 6, 6), [2], {}),
    "relu": ((4, 6, 6), [], {}), "gelu": ((4, 6, 6), [], {}), "silu": ((4, 6, 6), [], {}),
    "sigmoid": ((4, 6, 6), [], {}), "tanh": ((4, 6, 6), [], {}), "leaky_relu": ((4, 6, 6), [0.1], {}),
    "maxpool": ((4, 8, 8), [2], {}),
    "avgpool": ((4, 8, 8), [3], {"stride": 1, "pad": 1}),
    "adaptive_avgpool": ((4, 8, 8), [3], {}),
    "identity": ((4, 6, 6), [], {}),
    "upsample": ((4, 3, 3), [2], {"mode": "linear"}),
    "dropout": ((4, 6, 6), [0.1], {}),
    "flatten": ((4, 3, 3), [], {}),
    # v2
    "relu6": ((4, 6, 6), [], {}), "hardswish": ((4, 6, 6), [], {}), "hardsigmoid": ((4, 6, 6), [], {}),
    "permute": ((4, 6, 5), [1, 2, 0], {}),
    "chunk": ((4, 6, 6), [2, 1], {}),
    "channel_shuffle": ((4, 6, 6), [2], {}),
    "tokens": ((4, 6, 5), [], {}),
    "select": ((6, 8), [2], {}),
    "attention": ((6, 8), [2], {"causal": True}),
    "window_attention": ((9, 9, 8), [2], {"window": 4, "shift": 2}),
    "patch_merge": ((5, 7, 6), [], {}),
    "embedding": ((6,), [10, 4], {}),  # token ids in
    "positions": ((6, 8), [7, 4], {}),
}
#: The internal ops elaboration makes: (input shapes, arguments).
INTERNAL = {
    "input": ([(4, 6, 6)], {}),
    "residual_add": ([(4, 6, 6)] * 2, {}),
    "add": ([(4, 6, 6)] * 2, {}),
    "mul": ([(4, 6, 6)] * 2, {}),
    "concat": ([(4, 6, 6), (2, 6, 6)], {}),
    "zero_pad": ([(4, 6, 6)], {"stride": (2, 2), "channels": 4}),
    "parameter": ([(4, 1, 1)], {"dims": (4, 1, 1), "init": 0.5}),  # a source: its "input" is unused
}


def test_every_entry_declares_every_field():
    assert set(REGISTRY) == set(EXAMPLES) | set(INTERNAL), "give a new op an example here"
    for name, op in REGISTRY.items():
        assert entry_problem(op) is None, name
        assert op.category in CATEGORIES and op.doc and callable(op.label), name
        assert isinstance(op.diagram, Diagram), name
        assert op.receptive_field is not None, name
        assert op.nonlinear == (op.category == "activation"), name  # the analysis's convention
        assert not op.zero_init_norm or op.category == "norm", name
        assert (op.code is None and op.inline_code is None) == (op.internal and not op.source), name
        assert op.code is None or op.inline_code is None, name  # a module, or inline: not both
    assert [n for n, op in REGISTRY.items() if op.zero_init_norm] == ["batchnorm"]
    assert [n for n, op in REGISTRY.items() if op.diagram.kind == "input"] == ["input"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_user_op_answers_each_pass(name):
    op = user_ops()[name]
    in_shape, positional, keywords = EXAMPLES[name]
    args = bind(op, positional, keywords, {}, in_shape)
    out = op.infer(in_shape, args)
    assert isinstance(op.label(args, in_shape, out), str) and op.label(args, in_shape, out)
    assert op.params(in_shape, args) >= 0 and op.macs(in_shape, out, args) >= 0
    field_ = field_of(op, in_shape, out, args)
    assert field_ in (POINTWISE, GLOBAL) or isinstance(field_, Window)
    if any(a.name == "kernel" for a in op.args):  # an op with a window declares it
        assert isinstance(field_, Window) and max(field_.kernel) > 1, name
    if op.inline_code is not None:  # no module: run the expression forward is written with
        from resdsl.ops import torch_layers

        class Writer:
            inputs, rank = ["x"], len(in_shape) - 1

            def lit(self, value):
                return repr(value)

            def helper(self, helper):
                return helper

        Writer.args = args
        result = eval(op.inline_code(Writer()), {"x": torch.randn(2, *in_shape), **vars(torch_layers)})
        assert tuple(result.shape[1:]) == out and op.params(in_shape, args) == 0
        return
    module = op.build(in_shape, args)
    x = torch.randint(0, op.id_bound(args), (2, *in_shape)) if op.reads == "ids" else torch.randn(2, *in_shape)
    if op.call is not None:  # called its own way (attention: query, key and value)
        class Caller:
            inputs, module = ["x"], "m"

            def lit(self, value):
                return repr(value)

            def helper(self, helper):
                return helper

        Caller.args = args
        with torch.no_grad():
            result = eval(op.call(Caller()), {"x": x, "m": module, "torch": torch,
                                              **vars(__import__("resdsl.ops.torch_layers", fromlist=["_"]))})
    else:
        with torch.no_grad():
            result = module(x)
    assert tuple(result.shape[0 if not op.batched else 1:]) == out  # positions: no batch dim
    assert sum(p.numel() for p in module.parameters()) == op.params(in_shape, args)


@pytest.mark.parametrize("name", sorted(INTERNAL))
def test_every_internal_op_answers_each_pass(name):
    op = REGISTRY[name]
    shapes, args = INTERNAL[name]
    out = op.infer(shapes if op.category == "merge" else shapes[0], args)
    field_ = field_of(op, shapes[0], out, args)
    assert field_ in (POINTWISE, GLOBAL) or isinstance(field_, Window)
    assert isinstance(op.label(args, shapes[0], out), str)


def test_the_declared_fields_of_the_catalogue():
    """The windows the old if-chain computed, now declared by each entry."""
    def field(name):
        in_shape, positional, keywords = EXAMPLES[name]
        op = REGISTRY[name]
        args = bind(op, positional, keywords, {}, in_shape)
        return field_of(op, in_shape, op.infer(in_shape, args), args)

    assert field("conv") == Window((5, 5), (2, 2))  # dilated span
    assert field("upconv") == Window((2, 2), (1, 1), upscale=(2, 2))
    assert field("maxpool") == Window((2, 2), (2, 2))
    assert field("adaptive_avgpool") == Window((3, 3), (Fraction(8, 3),) * 2)
    assert field("upsample") == Window((2, 2), (1, 1), upscale=(2, 2))
    assert field("flatten") is GLOBAL
    assert field("linear") is POINTWISE
    assert field_of(REGISTRY["linear"], (4, 6, 6), (4, 6, 5), {"out_features": 5}) == Window((1, 6), (1, 1))
    assert field_of(REGISTRY["flatten"], (4, 1, 1), (4,), {}) is POINTWISE
    assert field_of(REGISTRY["adaptive_avgpool"], (4, 8, 8), (4, 1, 1), {"size": (1, 1)}) is GLOBAL
    for name in ("batchnorm", "relu", "dropout", "identity"):
        assert field(name) is POINTWISE
    assert ANNOTATION.fold == "label" and not ANNOTATION.on_skip


def test_a_linear_layer_over_a_spatial_tensor_mixes_its_last_dimension():
    """Declared, not defaulted: the old chain counted any unnamed op as pointwise."""
    net = resdsl.loads("network n:\n    input x: [2, 8, 8]\n    linear 4\n")
    assert receptive_fields(net.graph)[net.graph.graph["output"]] == (1, 8)


def test_the_projection_recipe_reaches_its_target():
    for in_shape, target, strides in (((16,), (32,), ()), ((4, 8, 8), (8, 4, 4), (2, 2)), ((4, 9), (8, 5), (2,))):
        shape = in_shape
        for op, args in projection(in_shape, target, strides):
            shape = REGISTRY[op].infer(shape, args)
        assert shape == target
