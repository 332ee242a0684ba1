"""The v2 ops (issue 14, docs/language.md section 5, "(v2)"): each one's shape rule against
torch's own, its generated code against torch's functional reference, its errors
located with hints, and the CLI on a spec that uses them all."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import resdsl
from resdsl.analysis.report import receptive_fields
from resdsl.backends.torch import source_of
from resdsl.cli import main
from resdsl.ops import REGISTRY, OpError, bind
from resdsl.ops.merge import broadcast
from resdsl.ops.torch_layers import _drop_path
from tests.located import error, located

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL = {"maxpool": (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), "avgpool": (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)}


def spec(input_shape: str, *lines: str) -> str:
    return "network n:\n    input x: " + input_shape + "\n" + "".join(f"    {line}\n" for line in lines)


def model(text: str, **params):
    """The module the generated source defines (what ``Net.build`` runs), in eval mode."""
    net = resdsl.loads(text, **params)
    return net, source_of(net).module_class()().eval()




def rule(op_name: str, in_shape: tuple, positional=(), **keywords):
    op = REGISTRY[op_name]
    args = bind(op, list(positional), keywords, {}, in_shape)
    return op.infer(in_shape, args), args


@pytest.fixture(autouse=True)
def _quiet():
    # torch warns that an even "same" kernel may copy the input: true, and not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using padding='same'")
        yield


# ---- 1. relu6, hardswish, hardsigmoid --------------------------------------------------------
@pytest.mark.parametrize("op, reference, cls", [
    ("relu6", F.relu6, "nn.ReLU6"), ("hardswish", F.hardswish, "nn.Hardswish"),
    ("hardsigmoid", F.hardsigmoid, "nn.Hardsigmoid"),
])
def test_activations_match_torch_and_run_in_place_on_a_fresh_input(op, reference, cls):
    net, m = model(spec("[3, 5, 5]", "c: conv 3, 4", op, "keep: conv 1, 4", op, "add keep"))
    text = source_of(net).text
    assert f"{cls}(inplace=True)" in text  # after a conv: fresh and dead, as torchvision builds it
    assert f"{cls}()" in text  # read again by the add: kept
    x = torch.randn(2, 3, 5, 5) * 4
    first = reference(m.c(x))
    keep = m.keep(first)
    assert torch.allclose(m(x), reference(keep) + keep, atol=1e-6)
    m.train()(x).sum().backward()  # in place still has a gradient
    assert net.graph.graph and REGISTRY[op].nonlinear and REGISTRY[op].category == "activation"


def test_activation_misuse_is_located():
    located(error(spec("[3, 5, 5]", "hardswish 2")), 3, 15, "takes 0 positional arguments", "usage: hardswish")
    located(error(spec("[3, 5, 5]", "relu6 inplace=true")), 3, 11, "no argument 'inplace'")


# ---- 2. conv pad=same ---------------------------------------------------------------------------
@SETTINGS
@given(rank=st.integers(1, 3), size=st.integers(1, 11), kernel=st.integers(1, 8), dilation=st.integers(1, 3),
       channels=st.sampled_from([1, 3]))
def test_pad_same_shape_is_torchs(rank, size, kernel, dilation, channels):
    in_shape = (channels,) + (size,) * rank
    shape, args = rule("conv", in_shape, [kernel, 2], pad="same", dilation=dilation)
    assert args["pad"] == "same" and shape == (2,) + (size,) * rank
    module = CONV[rank - 1](channels, 2, kernel, padding="same", dilation=dilation)
    assert tuple(module(torch.zeros(1, *in_shape)).shape[1:]) == shape


@pytest.mark.parametrize("kernel, dilation", [(8, 1), (5, 1), (4, 2), (2, 3), (3, 2)])
def test_pad_same_pads_as_torch_does_the_odd_one_on_the_right(kernel, dilation):
    net, m = model(spec("[2, 13]", f"c: conv {kernel}, 3, pad=same, dilation={dilation}"))
    assert 'padding="same"' in source_of(net).text
    x = torch.randn(2, 2, 13)
    total = dilation * (kernel - 1)
    padded = F.pad(x, (total // 2, total - total // 2))  # written out: left floor, right the rest
    expected = F.conv1d(padded, m.c.weight, m.c.bias, dilation=dilation)
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_pad_same_2d_even_kernel_matches_functional():
    net, m = model(spec("[3, 9, 10]", "c: conv 4x2, 5, pad=same"))
    x = torch.randn(1, 3, 9, 10)
    expected = F.conv2d(F.pad(x, (0, 1, 1, 2)), m.c.weight, m.c.bias)
    assert net.output_shape == (5, 9, 10) and torch.allclose(m(x), expected, atol=1e-5)


def test_pad_same_with_a_stride_is_a_located_error():
    diag = error(spec("[3, 8, 8]", "conv 3, 8, stride=2, pad=same"))
    located(diag, 3, 26, "pad=same needs stride 1", "stride 2", "pad=kernel//2")
    diag = error(spec("[3, 8, 8]", "conv 3, 8, pad=valid"))
    located(diag, 3, 16, "'pad' must be an integer or a size such as 3x3 or same")


# ---- 3. pooling ceil=true ---------------------------------------------------------------------------
@SETTINGS
@given(rank=st.integers(1, 3), size=st.integers(1, 12), kernel=st.integers(1, 5), stride=st.integers(1, 4),
       pad=st.integers(0, 2), kind=st.sampled_from(["maxpool", "avgpool"]))
def test_ceil_mode_shape_is_torchs(rank, size, kernel, stride, pad, kind):
    in_shape = (2,) + (size,) * rank
    try:
        shape, _ = rule(kind, in_shape, [kernel], stride=stride, pad=pad, ceil=True)
    except OpError:
        shape = None
    module = POOL[kind][rank - 1](kernel, stride, pad, ceil_mode=True)
    try:
        seen = tuple(module(torch.zeros(1, *in_shape)).shape[1:])
    except RuntimeError:
        seen = None
    assert shape == seen


@pytest.fixture(scope="module")
def squeezenet_pools():
    """(input shape, output shape) of every ceil-mode pool of torchvision's SqueezeNets at 224 and 227."""
    from torchvision.models import squeezenet1_0, squeezenet1_1

    seen = []
    for build in (squeezenet1_0, squeezenet1_1):
        features = build().features
        for size in (224, 227):
            hooks = [m.register_forward_hook(lambda mod, i, o: seen.append((tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
                     for m in features if isinstance(m, nn.MaxPool2d)]
            with torch.no_grad():
                features(torch.zeros(1, 3, size, size))
            for hook in hooks:
                hook.remove()
    return seen


def test_squeezenet_pools_get_torchs_shapes(squeezenet_pools):
    assert len(squeezenet_pools) == 12
    for in_shape, out_shape in squeezenet_pools:
        assert rule("maxpool", in_shape, [3], stride=2, ceil=True)[0] == out_shape
    # and without ceil the sizes differ somewhere (so the test could fail)
    assert any(rule("maxpool", i, [3], stride=2)[0] != o for i, o in squeezenet_pools)


@pytest.mark.parametrize("size, expected", [(224, 13), (227, 13), (231, 14)])
def test_squeezenet_1_0_stem_and_pools_in_a_spec(size, expected):
    # squeezenet1_0: conv 7x7/2, then three 3x3/2 ceil-mode pools between fire modules (which keep sizes)
    net = resdsl.loads(spec(f"[3, {size}, {size}]", "conv 7, 96, stride=2, pad=0", "relu",
                            "maxpool 3, stride=2, ceil=true", "conv 1, 16", "maxpool 3, stride=2, ceil=true",
                            "conv 1, 16", "maxpool 3, stride=2, ceil=true"))
    from torchvision.models import squeezenet1_0

    with torch.no_grad():
        theirs = squeezenet1_0().features(torch.zeros(1, 3, size, size)).shape[-1]
    assert net.output_shape[-1] == theirs == expected
    _, m = model(spec(f"[3, {size}, {size}]", "maxpool 3, stride=2, ceil=true"))
    assert "ceil_mode=True" in source_of(resdsl.loads(spec("[3, 8, 8]", "maxpool 3, stride=2, ceil=true"))).text
    x = torch.randn(1, 3, size, size)
    assert torch.equal(m(x), F.max_pool2d(x, 3, 2, ceil_mode=True))


def test_avgpool_ceil_matches_functional():
    _, m = model(spec("[2, 7, 7]", "avgpool 3, stride=2, pad=1, ceil=true"))
    x = torch.randn(2, 2, 7, 7)
    assert torch.allclose(m(x), F.avg_pool2d(x, 3, 2, 1, ceil_mode=True))


def test_ceil_errors_are_located():
    located(error(spec("[2, 1, 1]", "maxpool 5, stride=2, ceil=true")), 3, 13, "no window", "ceil=true")
    located(error(spec("[2, 4, 4]", "maxpool 2, ceil=yes")), 3, 16, "'ceil' must be true or false")


# ---- 4. layernorm over=last; 5. linear over the last dim --------------------------------------------------------
def test_layernorm_over_last_is_nn_layernorm_on_the_last_dim():
    net, m = model(spec("[4, 5, 6]", "n: layernorm eps=1e-6, over=last"))
    assert "nn.LayerNorm(6, eps=1e-06)" in source_of(net).text
    assert tuple(m.n.weight.shape) == (6,) and net.graph and sum(p.numel() for p in m.parameters()) == 12
    with torch.no_grad():
        m.n.weight.uniform_(0.5, 1.5), m.n.bias.uniform_(-1, 1)
    x = torch.randn(2, 4, 5, 6)
    assert torch.allclose(m(x), F.layer_norm(x, (6,), m.n.weight, m.n.bias, 1e-6), atol=1e-5)


def test_layernorm_over_channels_stays_the_default_v1_code():
    default = source_of(resdsl.loads(spec("[4, 5, 6]", "layernorm"))).text
    written = source_of(resdsl.loads(spec("[4, 5, 6]", "layernorm over=channels"))).text
    assert "ChannelLayerNorm(4)" in default and default.replace("layernorm over=channels", "") == \
        written.replace("layernorm over=channels", "")
    located(error(spec("[4, 5, 6]", "layernorm over=first")), 3, 15, "one of channels, last")


@pytest.mark.parametrize("shape", [(6,), (3, 6), (2, 3, 6), (2, 2, 3, 6)])
def test_linear_over_the_last_dim_of_any_rank(shape):
    net, m = model(spec(str(list(shape)), "fc: linear 10"))
    assert net.output_shape == shape[:-1] + (10,)
    assert tuple(m.fc.weight.shape) == (10, 6)
    x = torch.randn(2, *shape)
    assert torch.allclose(m(x), F.linear(x, m.fc.weight, m.fc.bias), atol=1e-6)


# ---- 6. permute ---------------------------------------------------------------------------
def test_permute_is_a_module_with_the_batch_dim_counted():
    net, m = model(spec("[4, 5, 6]", "p: permute 1, 2, 0", "n: layernorm over=last", "fc: linear 8",
                        "q: permute 2, 0, 1"))
    text = source_of(net).text
    assert "self.p = Permute((0, 2, 3, 1))" in text and "self.q = Permute((0, 3, 1, 2))" in text
    assert "import torchvision" not in text and net.output_shape == (8, 5, 6)
    x = torch.randn(2, 4, 5, 6)
    y = x.permute(0, 2, 3, 1)
    y = F.linear(F.layer_norm(y, (4,), m.n.weight, m.n.bias), m.fc.weight, m.fc.bias)
    assert torch.allclose(m(x), y.permute(0, 3, 1, 2), atol=1e-5)
    assert [k for k in m.state_dict()] == ["n.weight", "n.bias", "fc.weight", "fc.bias"]


@SETTINGS
@given(st.permutations(range(4)), st.lists(st.integers(1, 4), min_size=4, max_size=4))
def test_permute_shape_is_torchs(dims, shape):
    out, _ = rule("permute", tuple(shape), dims)
    assert out == tuple(torch.zeros(1, *shape).permute(0, *(d + 1 for d in dims)).shape[1:])


def test_permute_errors_are_located():
    located(error(spec("[4, 5, 6]", "permute 1, 2")), 3, 5, "needs 3 dims", "got 2", "permute 1, 2, 0")
    located(error(spec("[4, 5, 6]", "permute 1, 2, 0, 3")), 3, 22, "needs 3 dims", "got 4")  # at the extra dim
    located(error(spec("[4, 5, 6]", "permute 1, 1, 0")), 3, 16, "dim 1 appears twice", "permutation of 0..2")
    located(error(spec("[4, 5, 6]", "permute 0, 3, 1")), 3, 16, "dim 3 is out of range")
    located(error(spec("[4, 5, 6]", "permute 0, -1, 1")), 3, 16, "at least 0")
    located(error(spec("[4, 5, 6]", "permute")), 3, 5, "needs 'dims'", "permute dims, ...")


def test_receptive_field_follows_dims_through_a_permute():
    # channels-last MLP (mixes channels only) between two 3x3 convs: 5x5, as without it
    net = resdsl.loads(spec("[4, 16, 16]", "conv 3, 4", "permute 1, 2, 0", "linear 8", "linear 4",
                            "permute 2, 0, 1", "conv 3, 4"))
    assert receptive_fields(net.graph)[net.graph.graph["output"]] == (5, 5)
    # a pool over a permuted tensor widens the input dim it slides along: [C, W, H], 1x3 on H
    net = resdsl.loads(spec("[4, 16, 16]", "permute 0, 2, 1", "maxpool 1x3, stride=1"))
    assert receptive_fields(net.graph)[net.graph.graph["output"]] == (3, 1)


# ---- 7. chunk; 8. channel_shuffle -----------------------------------------------------------------
def test_chunk_is_inline_and_takes_the_ith_equal_part():
    net, m = model(spec("[6, 4, 4]", "a: conv 1, 8", "chunk 4, 3", "b: conv 1, 2"))
    text = source_of(net).text
    assert ".chunk(4, 1)[3]" in text and "chunk_" not in text.split("def forward")[0]
    assert net.output_shape == (2, 4, 4) and list(dict(m.named_children())) == ["a", "b"]
    x = torch.randn(2, 6, 4, 4)
    assert torch.allclose(m(x), m.b(m.a(x).chunk(4, 1)[3]), atol=1e-6)


def test_chunk_errors_are_located():
    located(error(spec("[6, 4, 4]", "chunk 4, 0")), 3, 11, "4 chunks do not divide the 6 channels")
    located(error(spec("[6, 4, 4]", "chunk 2, 2")), 3, 14, "index must be below 2")
    located(error(spec("[6, 4, 4]", "chunk 2")), 3, 5, "needs 'index'")


@pytest.mark.parametrize("shape, groups", [((12, 3, 3), 3), ((8, 5), 2), ((6, 2, 2, 2), 2), ((10,), 5)])
def test_channel_shuffle_is_torchvisions(shape, groups):
    from torchvision.models.shufflenetv2 import channel_shuffle

    net, m = model(spec(str(list(shape)), f"channel_shuffle {groups}"))
    assert f"_channel_shuffle(x, {groups})" in source_of(net).text and not list(m.children())
    x = torch.randn(2, *shape)
    out = m(x)
    assert net.output_shape == shape
    if len(shape) == 3:
        assert torch.equal(out, channel_shuffle(x, groups))
    reference = x.reshape(2, groups, shape[0] // groups, *shape[1:]).transpose(1, 2).reshape(2, *shape)
    assert torch.equal(out, reference)


def test_channel_shuffle_errors_are_located():
    located(error(spec("[6, 4, 4]", "channel_shuffle 4")), 3, 21, "groups=4 does not divide the 6 channels")


# ---- 9. broadcasting add / mul ------------------------------------------------------------------------
def test_squeeze_excitation_gate_broadcasts():
    net, m = model(spec("[8, 5, 5]", "body: conv 3, 8", "avg: adaptive_avgpool 1", "fc1: conv 1, 2", "relu",
                        "fc2: conv 1, 8", "hardsigmoid", "mul body"))
    assert net.output_shape == (8, 5, 5)
    assert "out * body" in source_of(net).text  # same rank: torch broadcasts as written
    x = torch.randn(2, 8, 5, 5)
    body = m.body(x)
    gate = F.hardsigmoid(m.fc2(F.relu(m.fc1(body.mean((2, 3), keepdim=True)))))
    assert torch.allclose(m(x), gate * body, atol=1e-6)


def test_a_lower_rank_batched_tensor_is_aligned_to_the_right():
    net, m = model(spec("[5, 3, 5]", "adaptive_avgpool 1", "flatten", "v: linear 5", "mul input", "add v"))
    assert net.output_shape == (5, 3, 5)
    text = source_of(net).text
    assert "v[:, None, None] * x" in text and "+ v[:, None, None]" in text
    x = torch.randn(2, 5, 3, 5)
    v = m.v(x.mean((2, 3)))
    assert torch.allclose(m(x), v[:, None, None, :] * x + v[:, None, None, :], atol=1e-6)


def test_equal_shapes_keep_the_v1_code():
    text = source_of(resdsl.loads(spec("[4, 6, 6]", "a: conv 3, 4", "conv 3, 4", "add a", "mul a"))).text
    assert "out += a" in text or "out = out + a" in text
    assert "out = out * a" in text and "None" not in text.split("def forward")[1]


@SETTINGS
@given(st.lists(st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=4), min_size=2, max_size=2))
def test_broadcast_rule_is_torchs(shapes):
    try:
        ours = broadcast([tuple(s) for s in shapes], {})
    except OpError:
        ours = None
    try:
        theirs = tuple(torch.broadcast_shapes(*(torch.Size(s) for s in shapes)))
    except RuntimeError:
        theirs = None
    assert ours == theirs


def test_shapes_that_do_not_broadcast_are_a_located_error_naming_both():
    diag = error(spec("[8, 5, 5]", "a: conv 3, 4, stride=2", "conv 3, 8", "mul a"))
    located(diag, 5, 9, "shapes do not broadcast", "[8, 3, 3]", "[4, 3, 3]", "numpy")


# ---- 10. drop_path is torchvision's stochastic_depth ----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (5, 2, 3, 3), (3, 2, 2, 2, 2)])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
def test_drop_path_draws_what_stochastic_depth_draws(shape, p):
    from torchvision.ops import stochastic_depth

    x = torch.randn(*shape)
    torch.manual_seed(7)
    ours = _drop_path(x, p, True)
    after_ours = torch.rand(1)
    torch.manual_seed(7)
    theirs = stochastic_depth(x, p, "row", True)
    after_theirs = torch.rand(1)
    assert torch.equal(ours, theirs) and torch.equal(after_ours, after_theirs)  # same draws, same order
    assert torch.equal(_drop_path(x, p, False), x)


def test_a_residual_drop_path_matches_stochastic_depth_in_train_mode():
    from torchvision.ops import stochastic_depth

    net, m = model(spec("[4, 6, 6]", "residual drop_path=0.3:", "    c: conv 3, 4"))
    m.train()
    x = torch.randn(8, 4, 6, 6)
    torch.manual_seed(3)
    ours = m(x)
    torch.manual_seed(3)
    theirs = stochastic_depth(m.c(x), 0.3, "row", True) + x
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, m.c(x) + x)  # rows were dropped (and the test could fail)
    assert torch.equal(m.eval()(x), m.c(x) + x)


# ---- the CLI on a spec that uses every v2 op ------------------------------------------------------------
ALL = spec("[8, 9, 9]", "conv 4x4, 16, pad=same", "relu6", "maxpool 2, ceil=true", "hardswish",
           "s: conv 3, 16, pad=same, dilation=2", "adaptive_avgpool 1", "conv 1, 16", "hardsigmoid", "mul s",
           "channel_shuffle 4", "chunk 2, 1", "permute 1, 2, 0", "layernorm eps=1e-6, over=last", "linear 32",
           "gelu", "linear 8", "permute 2, 0, 1")


def test_cli_check_compile_render_analyze(tmp_path: Path, capsys):
    path = tmp_path / "all.res"
    path.write_text(ALL)
    assert main(["check", str(path)]) == 0
    assert "[8, 9, 9] -> [8, 5, 5]" in capsys.readouterr().out
    assert main(["compile", str(path), "-o", str(tmp_path / "all.py")]) == 0
    assert "shapes match" in capsys.readouterr().out
    assert "Permute((0, 2, 3, 1))" in (tmp_path / "all.py").read_text()
    assert main(["render", str(path), "-o", str(tmp_path / "all.dot")]) == 0
    dot = (tmp_path / "all.dot").read_text()
    assert "channel shuffle, 4" in dot and "chunk 1 of 2" in dot
    assert main(["analyze", str(path)]) == 0
    report = capsys.readouterr().out
    assert "relu6" in report and "13x13" in report and "5,224" in report


def test_generated_file_runs_standalone(tmp_path: Path):
    net = resdsl.loads(ALL)
    namespace: dict = {}
    exec(compile(source_of(net).text, "all.py", "exec"), namespace)  # noqa: S102 - our own output
    standalone = namespace["N"]().eval()
    built = net.build().eval()
    standalone.load_state_dict(built.state_dict())
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        assert torch.equal(standalone(x), built(x))


def test_channels_after_a_chunk_follow_the_parameters():
    text = (
        "network shuf(width: int = 16):\n    input x: [16, 8, 8]\n    block unit(c: int):\n"
        "        left: chunk 2, 0\n        from input\n        chunk 2, 1\n        conv 1, c // 2\n"
        "        concat left\n        channel_shuffle 2\n    stage unit(width) x 2\n")
    source = source_of(resdsl.loads(text))
    assert "nn.Conv2d(in_channels // 2, c // 2" in source.text and "width != 16" not in source.text
    wide = source.module_class()(width=32)
    reference = resdsl.loads(text, width=32).build()
    assert [tuple(v.shape) for v in wide.state_dict().values()] == \
        [tuple(v.shape) for v in reference.state_dict().values()]
