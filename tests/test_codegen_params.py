"""Which network parameters a generated class follows (live) or bakes in (frozen),
decided from the graph and the IR alone (resdsl/backends/codegen/params.py).

A live parameter must really be live: the generated class built with another value
is the module the spec gives with that value (state-dict shapes, and outputs once
the weights are copied). A frozen one makes the class refuse other values.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import resdsl  # noqa: E402
from resdsl.backends.codegen import frozen_params, generate  # noqa: E402
from resdsl.backends.codegen.forms import parameter, same  # noqa: E402
from resdsl.graph import op_nodes  # noqa: E402


def assert_same_module(text: str, **values) -> None:
    """The class generated at the defaults, built with ``values``, equals the spec loaded
    with ``values``: same state-dict keys and shapes, same outputs with the same weights."""
    got = generate(resdsl.loads(text)).module_class()(**values)
    net = resdsl.loads(text, **values)
    want = net.build()
    shapes = {k: tuple(v.shape) for k, v in want.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in got.state_dict().items()} == shapes
    got.load_state_dict(want.state_dict())
    got.eval()
    want.eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        assert torch.allclose(got(x), want(x), atol=1e-6)


def frozen(text: str, **values) -> set[str]:
    return set(frozen_params(resdsl.loads(text, **values)))


# ---- the forms: equal keys mean equal for every value -------------------------------------
def test_forms_normalise_same_padding_and_strides():
    size = parameter("size", 32)
    assert same((size + 2 - 3) // 1 + 1, size)  # a 3x3 conv, pad 1, stride 1
    assert same((size + 2 - 3) // 2 + 1, -(-size // 2))  # stride 2 is ceil(size / 2)
    assert not same((size + 2 - 3) // 2 + 1, size)
    assert not same(size * parameter("h", 1), size)  # equal values, different functions
    chain = size
    for _ in range(500):  # a deep chain stays small (linear time) and exact
        chain = (chain + 2 - 3) // 1 + 1
    assert same(chain, size)


# ---- structure: automatic shortcuts -------------------------------------------------------
DECIDES = """network g(w: int = 16):
    input x: [16, 8, 8]
    block b(out: int):
        residual:
            conv 3, out
            batchnorm
    b(w)
"""

KEEPS = """network g(w: int = 16):
    input x: [3, 8, 8]
    conv 3, w
    block b(out: int):
        residual:
            conv 3, out
            batchnorm
        relu
    stage b(w) x 2
"""


def test_a_width_that_decides_identity_or_projection_is_frozen():
    assert frozen(DECIDES) == {"w"}
    assert "downsample" in "".join(resdsl.loads(DECIDES, w=24).build().state_dict())  # it would differ
    with pytest.raises(ValueError, match="regenerate it"):
        generate(resdsl.loads(DECIDES)).module_class()(w=24)


def test_a_width_on_both_sides_of_every_shortcut_is_live():
    assert frozen(KEEPS) == set()
    assert_same_module(KEEPS, w=24)


STRIDED = """network g(size: int = 16):
    input x: [4, size, size]
    residual shortcut={policy}:
        conv 3, 8, stride={stride}
        batchnorm
    adaptive_avgpool 1
    flatten
    linear 3
"""


@pytest.mark.parametrize("policy", ["B", "A"])
def test_a_size_that_a_stride_2_body_halves_is_live(policy):
    text = STRIDED.format(policy=policy, stride=2)
    assert frozen(text) == set()
    for size in (9, 5, 2, 1):  # at 1 the shortcut's stride is 1, and reads the same one pixel
        assert_same_module(text, size=size)


def test_a_size_that_a_stride_4_body_shrinks_is_frozen():
    """ceil(size / ceil(size / 4)) is not 4 for every size: at 5 the projection has stride 3."""
    text = STRIDED.format(policy="B", stride=4)
    assert frozen(text) == {"size"}
    graph = resdsl.loads(text, size=5).graph
    strides = {data.args["stride"] for data in op_nodes(graph) if data.shortcut
               and data.op == "conv"}
    assert strides == {(3, 3)}


# ---- values written: literals and expressions ------------------------------------------------
def test_input_channels_are_live_and_a_size_read_by_linear_is_frozen():
    text = "network g(c: int = 3, length: int = 8):\n    input x: [c, length]\n    conv 3, 4\n    linear 5\n"
    assert frozen(text) == {"length"}  # nn.Linear(8, 5): the length is a literal
    assert_same_module(text, c=5)


def test_a_kernel_whose_default_padding_follows_it_is_frozen():
    text = "network g(k: int = 3):\n    input x: [4, 9, 9]\n    conv k, 8\n"
    assert "padding=1" in generate(resdsl.loads(text)).text  # pad = k // 2, written as 1
    assert frozen(text) == {"k"}


def test_padding_and_size_that_only_move_spatial_sizes_are_live():
    text = ("network g(p: int = 1, size: int = 12):\n    input x: [3, size, size]\n"
            "    conv 3, 8, pad=p\n    relu\n    adaptive_avgpool 1\n    flatten\n    linear 2\n")
    assert frozen(text) == set()
    assert_same_module(text, p=0, size=7)


def test_a_value_equal_expression_that_is_not_the_same_function_is_not_trusted():
    """flatten of [c, h, 1] at h = 1 has c channels, and the code writes nn.Linear(c, 2);
    at h = 2 it has 2c: h and c are frozen, not taken live because the value matched."""
    text = "network g(c: int = 4, h: int = 1):\n    input x: [c, h, 1]\n    flatten\n    linear 2\n"
    assert "nn.Linear(c, 2)" in generate(resdsl.loads(text)).text
    assert frozen(text) == {"c", "h"}


def test_scale_and_drop_path_are_written_in_forward_so_frozen():
    text = "network g(s: float = 0.5):\n    input x: [4]\n    residual scale=s:\n        linear 4\n"
    assert frozen(text) == {"s"}


# ---- every parameter called live is live: random small specs ----------------------------------
WIDTHS = ["4", "p", "2 * p", "q", "p + q"]
LINE = st.one_of(
    st.builds("conv {}, {}".format, st.sampled_from(["1", "3", "k"]), st.sampled_from(WIDTHS)),
    st.builds("conv 3, {}, stride={}".format, st.sampled_from(WIDTHS), st.sampled_from(["2", "t"])),
    st.builds("conv 3, {}, pad={}".format, st.sampled_from(WIDTHS), st.sampled_from(["0", "1"])),
    st.sampled_from(["batchnorm", "relu", "maxpool 2"]),
    st.builds("residual{}:\n        conv 3, {}, stride={}\n        batchnorm".format,
              st.sampled_from(["", " shortcut=A", " shortcut=B"]), st.sampled_from(WIDTHS),
              st.sampled_from(["1", "2", "t"])),
    st.builds("stage unit({}) x 2, stride={}".format, st.sampled_from(WIDTHS), st.sampled_from(["1", "2", "t"])),
    st.builds("unit({})".format, st.sampled_from(WIDTHS)),
    st.builds("skip: relu\n    conv 3, {}\n    {} skip".format, st.sampled_from(WIDTHS),
              st.sampled_from(["add", "concat"])),
)
UNIT = """    block unit(w: int, stride: int = 1):
        residual:
            conv 3, w, stride=stride
            batchnorm
        relu
"""
TAIL = st.sampled_from(["", "adaptive_avgpool 1\n    flatten\n    linear p", "flatten\n    linear 3"])


@st.composite
def specs(draw) -> str:
    defaults = {name: draw(st.integers(low, high)) for name, low, high in
                (("p", 2, 6), ("q", 2, 6), ("s", 4, 9), ("k", 1, 3), ("t", 1, 2))}
    head = ", ".join(f"{name}: int = {value}" for name, value in defaults.items())
    channels, size = draw(st.sampled_from(["3", "p"])), draw(st.sampled_from(["8", "s"]))
    lines = draw(st.lists(LINE, min_size=1, max_size=4)) + [draw(TAIL)]
    body = "\n".join(f"    {line}" for line in lines if line)
    return f"network g({head}):\n    input x: [{channels}, {size}, {size}]\n{UNIT}{body}\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.data())
def test_every_live_parameter_really_is_live(text, data):
    try:
        net = resdsl.loads(text)
    except resdsl.SpecError:
        assume(False)
    live = [name for name in net.params if name not in frozen_params(net)]
    assume(live)
    name = data.draw(st.sampled_from(live))
    value = data.draw(st.sampled_from([v for v in (1, 2, 3, 5, 7) if v != net.params[name]]))
    try:
        resdsl.loads(text, **{name: value})
    except resdsl.SpecError:
        assume(False)
    assert_same_module(text, **{name: value})


def test_a_zero_pad_of_no_channels_still_follows_the_width():
    """Option A between equal channel counts pads 0 channels (a literal in forward): at
    w = 8 it must pad 4, so w is frozen even though the literal is 0."""
    text = ("network g(w: int = 4):\n    input x: [4, 8, 8]\n    residual shortcut=A:\n"
            "        conv 3, w, stride=2\n")
    assert "(0, 0, 0, 0, 0, 0)" in generate(resdsl.loads(text)).text
    assert frozen(text) == {"w"}


def test_a_code_function_that_reads_a_size_freezes_what_reaches_it(monkeypatch):
    """An op whose torch module takes its input's length (read from c.in_shape) writes it
    as a literal: a parameter reaching that length is frozen."""
    from resdsl.ops import ANNOTATION, POINTWISE, REGISTRY, OpSpec

    probe = OpSpec(name="probe_norm", positional=(), keywords=(), infer=lambda s, a: s,
                   category="norm", doc="A norm over one channel of the whole length.",
                   code=lambda c: c.call("nn.LayerNorm", c.lit(c.in_shape[1])),
                   label=lambda a, i, o: "probe norm", receptive_field=POINTWISE, nonlinear=False,
                   diagram=ANNOTATION)
    monkeypatch.setitem(REGISTRY, "probe_norm", probe)
    text = "network g(length: int = 6):\n    input x: [1, length]\n    probe_norm\n"
    assert "nn.LayerNorm(6)" in generate(resdsl.loads(text)).text
    assert frozen(text) == {"length"}
