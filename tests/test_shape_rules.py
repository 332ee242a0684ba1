"""Property: every op's shape rule agrees with torch, and resdsl refuses exactly what torch cannot run."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from resdsl.ops import REGISTRY, OpError, bind

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_rule(op_name: str, in_shape: tuple[int, ...], keywords: dict):
    op = REGISTRY[op_name]
    try:
        args = bind(op, [], keywords, {}, in_shape)
        return op.infer(in_shape, args), op.build(in_shape, args), op.params(in_shape, args)
    except OpError:
        return None


def run_torch(module, in_shape):
    try:
        with torch.no_grad():
            return tuple(module(torch.zeros(1, *in_shape)).shape[1:])
    except RuntimeError:
        return None


spatial = st.integers(1, 12)


@SETTINGS
@given(
    rank=st.integers(1, 3), size=spatial, channels=st.sampled_from([2, 4, 6]),
    out=st.sampled_from([2, 4, 6]), kernel=st.integers(1, 5), stride=st.integers(1, 3),
    pad=st.integers(0, 3), dilation=st.integers(1, 3), groups=st.sampled_from([1, 2, 3]),
)
def test_conv(rank, size, channels, out, kernel, stride, pad, dilation, groups):
    in_shape = (channels,) + (size,) * rank
    keywords = dict(kernel=kernel, out_channels=out, stride=stride, pad=pad, dilation=dilation, groups=groups)
    rule = run_rule("conv", in_shape, keywords)
    if rule is None:  # refused: torch must not be able to build or run it either
        try:
            from torch import nn
            module = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1](channels, out, kernel, stride, pad, dilation, groups)
        except ValueError:
            return
        assert run_torch(module, in_shape) is None
        return
    shape, module, params = rule
    assert run_torch(module, in_shape) == shape
    assert params == sum(p.numel() for p in module.parameters())


@SETTINGS
@given(rank=st.integers(1, 3), size=spatial, kernel=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.integers(0, 2), kind=st.sampled_from(["maxpool", "avgpool"]))
def test_pools(rank, size, kernel, stride, pad, kind):
    in_shape = (3,) + (size,) * rank
    rule = run_rule(kind, in_shape, dict(kernel=kernel, stride=stride, pad=pad))
    if rule is None:
        from torch import nn
        cls = getattr(nn, f"{'Max' if kind == 'maxpool' else 'Avg'}Pool{rank}d")
        assert run_torch(cls(kernel, stride, pad), in_shape) is None
        return
    shape, module, _ = rule
    assert run_torch(module, in_shape) == shape


@SETTINGS
@given(rank=st.integers(1, 3), size=st.integers(1, 6), kernel=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.integers(0, 2), out=st.integers(1, 5))
def test_upconv(rank, size, kernel, stride, pad, out):
    in_shape = (2,) + (size,) * rank
    rule = run_rule("upconv", in_shape, dict(kernel=kernel, out_channels=out, stride=stride, pad=pad))
    if rule is None:
        return
    shape, module, params = rule
    assert run_torch(module, in_shape) == shape
    assert params == sum(p.numel() for p in module.parameters())


@SETTINGS
@given(rank=st.integers(0, 3), size=st.integers(1, 5), channels=st.sampled_from([2, 4, 8]),
       op=st.sampled_from(["batchnorm", "layernorm", "relu", "gelu", "silu", "sigmoid", "tanh",
                           "leaky_relu", "identity", "dropout", "flatten", "linear"]))
def test_shape_preserving_and_flat_ops(rank, size, channels, op):
    in_shape = (channels,) + (size,) * rank
    keywords = {"out_features": 3} if op == "linear" else {}
    shape, module, params = run_rule(op, in_shape, keywords)
    module.eval()
    assert run_torch(module, in_shape) == shape
    assert params == sum(p.numel() for p in module.parameters())


@SETTINGS
@given(rank=st.integers(1, 3), size=st.integers(1, 5), factor=st.integers(1, 3),
       mode=st.sampled_from(["nearest", "linear"]), out=st.integers(1, 3))
def test_upsample_and_adaptive_pool(rank, size, factor, mode, out):
    in_shape = (2,) + (size,) * rank
    shape, module, _ = run_rule("upsample", in_shape, dict(factor=factor, mode=mode))
    assert run_torch(module, in_shape) == shape
    shape, module, _ = run_rule("adaptive_avgpool", in_shape, dict(size=out))
    assert run_torch(module, in_shape) == shape


@pytest.mark.parametrize("groups, channels, ok", [(2, 8, True), (3, 8, False)])
def test_groupnorm_divisibility(groups, channels, ok):
    assert (run_rule("groupnorm", (channels, 4, 4), dict(groups=groups)) is not None) is ok
