"""The inference build's CPU runtime (resdsl/backends/onednn.py): convolutions as fused
oneDNN primitives over packed weights, exact against the portable build, and every
place where it must step aside (autograd, other dtypes, tracing, export) does."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import resdsl
from resdsl import zoo
from resdsl.backends import onednn
from resdsl.errors import UsageError
from tests.parity import randomize

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN")

ADD_THEN_SILU = """
network n:
    input x: [8, 12, 12]
    c0: conv 3x3, 8
    a0: silu
    c1: conv 3x3, 8
    add a0
    a1: silu
    c2: conv 3x3, 8
    add a1
    relu
    c3: conv 1x1, 8, stride=2
    relu6
    c4: conv 3x3, 8, groups=8
    gelu
    flatten
    fc: linear 4
"""


def _pair(net, seed: int = 0):
    """The accelerated inference build and the portable one, same randomised weights."""
    train = net.build().eval()
    randomize(train, seed=seed)
    state = train.state_dict()
    return (net.build(inference=True, weights=state),
            net.build(inference=True, weights=state, runtime="portable"))


def _input_shape(net) -> tuple[int, ...]:
    from resdsl.graph import op_node

    return op_node(net.graph, net.graph.graph["input"]).shape


def _close(a: torch.Tensor, b: torch.Tensor, tolerance: float = 1e-5) -> bool:
    return bool((a - b).abs().max() <= tolerance * b.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def resnet18():
    net = zoo.load("resnet18", num_classes=10)
    fast, portable = _pair(net, seed=1)
    return net, fast, portable


@pytest.fixture(scope="module")
def small():
    net = resdsl.loads(ADD_THEN_SILU)
    fast, portable = _pair(net, seed=2)
    return net, fast, portable


def test_what_is_fused_in_a_resnet(resnet18):
    _, fast, portable = resnet18
    report = fast.resdsl_runtime
    # 20 convs; 17 relus right after a conv; 8 residual adds, each with its relu
    assert (report.packed, report.adds, report.untraced) == (20, 8, ())
    assert report.activations == 17
    assert isinstance(fast.layer1[0].conv2, onednn.FusedConv2d) and fast.layer1[0].conv2.binary
    assert not any(isinstance(m, onednn._Fused) for m in portable.modules())
    assert not hasattr(portable, "resdsl_runtime")


def test_state_dict_is_the_portable_builds(resnet18):
    _, fast, portable = resnet18
    a, b = fast.state_dict(), portable.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in fast.parameters())  # eval only


@pytest.mark.parametrize("batch", [1, 3])
def test_exact_and_on_the_fast_path(resnet18, batch, monkeypatch):
    _, fast, portable = resnet18
    x = torch.randn(batch, 3, 64, 64)
    with torch.inference_mode():
        want = portable(x)

    def refuse(*args, **kwargs):
        raise AssertionError("the portable path ran where the fast path applies")

    monkeypatch.setattr(onednn._Fused, "_portable", refuse)
    with torch.inference_mode():
        got = fast(x)
    with torch.no_grad():
        assert _close(fast(x), want)
    assert _close(got, want)


def test_activations_oneDNN_cannot_fuse_after_an_add_stay_apart(small):
    net, fast, portable = small
    report = fast.resdsl_runtime
    # c0+silu, c3+relu6, c4+gelu fused; c1 + a0 then silu: the add is fused, the silu
    # stays apart; c2 + a1 then relu: both fused
    assert (report.packed, report.adds, report.activations) == (5, 2, 4)
    x = torch.randn(2, *_input_shape(net))
    with torch.inference_mode():
        assert _close(fast(x), portable(x))


def test_autograd_and_other_dtypes_take_the_portable_path(small):
    net, fast, portable = small
    x = torch.randn(2, *_input_shape(net), requires_grad=True)
    fast(x).sum().backward()
    want_grad = x.grad.clone()
    x.grad = None
    portable(x).sum().backward()
    assert _close(want_grad, x.grad)
    doubled = copy.deepcopy(fast).double()
    xd = x.detach().double()
    with torch.no_grad():
        assert _close(doubled(xd), copy.deepcopy(portable).double()(xd), 1e-10)


def test_new_weights_are_packed_again(small):
    net, fast, portable = small
    fast, portable = copy.deepcopy(fast), copy.deepcopy(portable)
    x = torch.randn(2, *_input_shape(net))
    with torch.no_grad():
        fast(x)
        state = {k: v + 0.01 * torch.randn_like(v) for k, v in portable.state_dict().items()}
        fast.load_state_dict(state)
        portable.load_state_dict(state)
        assert _close(fast(x), portable(x))
        fast.c0.weight.mul_(2.0)  # an in-place change bumps the version: packed again
        portable.c0.weight.mul_(2.0)
        assert _close(fast(x), portable(x))


def test_copies_and_traces(resnet18):
    _, fast, portable = resnet18
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = portable(x)
        twin = copy.deepcopy(fast)
        assert _close(twin(x), want)
        traced = torch.jit.trace(fast, x)  # traces the portable computation
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        assert _close(torch.jit.load(buffer)(x), want)


def test_untraceable_forward_keeps_its_own(monkeypatch):
    net = zoo.load("resnet18", num_classes=10)
    original = onednn._OneLevel.trace

    def picky(self, root, *args, **kwargs):
        if type(root).__name__ == "Basic":
            raise torch.fx.proxy.TraceError("symbolically traced variables cannot be used as inputs to control flow")
        return original(self, root, *args, **kwargs)

    monkeypatch.setattr(onednn._OneLevel, "trace", picky)
    fast, portable = _pair(net, seed=4)
    report = fast.resdsl_runtime
    assert len(report.untraced) == 8 and report.adds == 0 and report.packed == 20
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert _close(fast(x), portable(x))


def test_runtime_is_checked():
    net = resdsl.loads(ADD_THEN_SILU)
    with pytest.raises(UsageError, match="runtime='fast'"):
        net.build(inference=True, runtime="fast")
    assert not hasattr(net.build(inference=True, device="meta"), "resdsl_runtime")


@pytest.mark.parametrize("name, overrides", [("mobilenet_v2", {}), ("efficientnet_b0", {"size": 32, "depth": 0.4}),
                                             ("r2plus1d_18", {"frames": 4, "size": 16})])
def test_mobile_and_video_nets(name, overrides):
    net = zoo.load(name, **overrides)
    fast, portable = _pair(net, seed=5)
    assert fast.resdsl_runtime.packed > 0 and fast.resdsl_runtime.activations > 0
    x = torch.randn(2, *_input_shape(net))
    with torch.inference_mode():
        assert _close(fast(x), portable(x), 1e-4)


def test_fx_traces_the_whole_model_the_portable_way(small):
    """fx reads the classes' own ``forward`` (not the rewritten one bound to the instance):
    a fused activation's old place is the identity, a merge's conv adds nothing unasked."""
    net, fast, portable = small
    traced = torch.fx.symbolic_trace(fast)
    assert "mkldnn" not in traced.code
    x = torch.randn(2, *_input_shape(net))
    with torch.inference_mode():
        assert _close(traced(x), portable(x))
    assert isinstance(fast.a0, onednn.FusedAway) and fast.a0.into == "c0"
    assert not isinstance(fast.relu_0, onednn.FusedAway)  # after a fused add: it stays


MLP = """
network mlp:
    input x: [5, 12]
    fc1: linear 32
    gelu
    fc2: linear 32, bias=false
    relu
    fc3: linear 32
    tanh
    add fc3
    fc4: linear 8
    silu
"""


def test_linear_layers_and_their_activations(monkeypatch):
    net = resdsl.loads(MLP)
    fast, portable = _pair(net, seed=6)
    report = fast.resdsl_runtime
    # fc1+gelu, fc2+relu, fc4+silu; fc3's output is also read by the add: not fused
    assert (report.linears, report.activations, report.packed) == (3, 3, 0)
    assert isinstance(fast.fc1, onednn.FusedLinear) and not isinstance(fast.fc3, onednn.FusedLinear)
    x = torch.randn(3, *_input_shape(net))
    with torch.inference_mode():
        want = portable(x)

    class NoLinear:
        def __getattr__(self, name):
            raise AssertionError("the portable path ran where the fast path applies")

    monkeypatch.setattr(onednn, "F", NoLinear())
    with torch.inference_mode():
        got = fast(x)
    monkeypatch.undo()
    assert _close(got, want)
    assert _close(torch.jit.script(fast)(x), want)
    assert _close(torch.fx.symbolic_trace(fast)(x), want)
    x.requires_grad_(True)
    fast(x).sum().backward()  # autograd: the portable way
    assert x.grad is not None and list(fast.state_dict()) == list(portable.state_dict())
