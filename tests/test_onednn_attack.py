"""The CPU runtime (resdsl/backends/onednn.py) under what users do to a built module:
copy it whole (pickle, torch.save), change its dtype and back, build and load it in
inference mode, trace it with torch.fx. Each case once gave a wrong output or an error
where the portable build gives the right one."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

import resdsl
from resdsl.backends import onednn
from tests.test_onednn import _close, _input_shape, _pair

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN")

# A silu fused into the root's conv (run twice by the unfused forward: wrong), and a
# labelled residual (a submodule) whose relu after the add is fused into its conv
# (applied before the add by the unfused forward: wrong).
NESTED = """
block unit(c: int):
    residual:
        c1: conv 3x3, c
        silu
        c2: conv 3x3, c
    relu

network n:
    input x: [6, 10, 10]
    c0: conv 3x3, 6
    silu
    r: unit(6)
    c3: conv 3x3, 6, stride=2
    gelu
"""


@pytest.fixture(scope="module")
def nested():
    net = resdsl.loads(NESTED)
    fast, portable = _pair(net, seed=11)
    assert (fast.resdsl_runtime.adds, fast.resdsl_runtime.activations) == (1, 4)
    return net, fast, portable


def test_every_module_keeps_its_path(nested):
    _, fast, portable = nested
    paths = dict(fast.named_modules())  # (a fused conv gains a `post`)
    assert all(paths.get(path) is module for path, module in _build_paths(fast, portable))


def _build_paths(fast, portable):
    """(path, the module at that path in ``fast``) for every path of ``portable``."""
    return [(path, fast.get_submodule(path)) for path, _ in portable.named_modules()]


def _fast_only(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the portable path ran where the fast path applies")

    monkeypatch.setattr(onednn._Fused, "_portable", refuse)


def _same(model, portable, x) -> bool:
    with torch.inference_mode():
        return _close(model(x), portable(x))


@pytest.mark.parametrize("how", ["pickle", "torch.save", "deepcopy"])
def test_whole_module_copies_keep_the_fused_forward(nested, how, monkeypatch):
    net, fast, portable = nested
    x = torch.randn(2, *_input_shape(net))
    if how == "pickle":
        twin = pickle.loads(pickle.dumps(fast))
    elif how == "torch.save":
        buffer = io.BytesIO()
        torch.save(fast, buffer)
        buffer.seek(0)
        twin = torch.load(buffer, weights_only=False)
    else:
        twin = copy.deepcopy(fast)
    assert type(twin).__name__ == type(portable).__name__
    assert isinstance(twin, type(portable)) and isinstance(twin.r, type(portable.r))
    want = _same(twin, portable, x)
    _fast_only(monkeypatch)
    assert want and _same(twin, portable, x)
    assert _same(pickle.loads(pickle.dumps(twin)), portable, x)  # and a copy of the copy


def test_a_pack_is_not_mistaken_for_a_new_weight_at_the_same_address():
    # model.half().float() often gives a conv its float weight back at the address it had
    # (the allocator's free block) and at the version it had, rounded to half: a key of
    # address and version kept the pack of the old weight
    weight = torch.randn(8, 8, 3, 3)
    key, address = onednn._identity(weight), weight.data_ptr()
    del weight
    for _ in range(64):
        again = torch.randn(8, 8, 3, 3)
        if again.data_ptr() == address:
            break
    if again.data_ptr() != address:
        pytest.skip("this allocator did not give the block back")
    assert onednn._identity(again) != key
    assert onednn._identity(again) == onednn._identity(again)


def test_half_then_float_packs_the_new_weights():
    net = resdsl.loads("network n:\n    input x: [8, 12, 12]\n    c0: conv 3x3, 8\n    silu\n")
    fast, portable = _pair(net, seed=12)
    x = torch.randn(2, *_input_shape(net))
    assert _same(fast, portable, x) and _same(fast, portable, x[:1])
    fast.half().float()
    portable.half().float()
    assert _same(fast, portable, x) and _same(fast, portable, x[:1])


def test_built_and_loaded_in_inference_mode(nested):
    net, _, portable = nested
    x = torch.randn(2, *_input_shape(net))
    with torch.inference_mode():
        fast = net.build(inference=True)
        fast(x), fast(x[:1])  # packs for both batch sizes
        fast.load_state_dict(portable.state_dict())  # copied in place, in inference mode
        assert _close(fast(x), portable(x)) and _close(fast(x[:1]), portable(x[:1]))
    # built as normal tensors, whose version counter tells a change: packed once, not per call
    assert not fast.c0.weight.is_inference() and set(fast.c0._packed) == {True, False}
    assert _close(fast(x), portable(x))  # and usable outside inference mode


def test_inference_tensor_weights_are_packed_each_call(nested):
    net, fast, portable = nested
    fast, portable = copy.deepcopy(fast), copy.deepcopy(portable)
    x = torch.randn(2, *_input_shape(net))
    with torch.inference_mode():
        state = {k: v.clone() for k, v in portable.state_dict().items()}  # inference tensors
        fast.load_state_dict(state, assign=True)
        assert fast.c0.weight.is_inference()
        assert _close(fast(x), portable(x))
        fast.c0.weight.mul_(0.5)  # no version counter records this
        portable.load_state_dict(fast.state_dict())
        assert _close(fast(x), portable(x))


def test_fx_symbolic_trace_computes_the_portable_program(nested):
    net, fast, portable = nested
    x = torch.randn(2, *_input_shape(net))
    traced = torch.fx.symbolic_trace(fast)
    assert _same(traced, portable, x)


def test_a_pickled_copy_keeps_its_fused_activations(nested):
    """What a pickled copy runs: its classes' own forward, in which each fused activation's
    place is a FusedAway and each conv still applies its post-op."""
    _, fast, _ = nested
    twin = pickle.loads(pickle.dumps(fast))
    assert isinstance(twin.silu_0, onednn.FusedAway) and twin.c0.onednn_post is not None
    assert twin.c0._packed == {}  # packed again on first use
