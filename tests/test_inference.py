"""The inference build (``net.build(inference=True)``, ``resdsl compile --inference``).

Exactness: for every zoo model, the inference build with folded weights gives the
training build's eval output within 1e-4 of the output's scale, with every weight
and every batchnorm statistic randomised (tests/parity.py's ``randomize``). One
variant per family runs at a small input by default; every other zoo entry is
``slow`` (at a small input where its spec has a size parameter); models above
150M parameters are checked on the meta device (keys and shapes of the folded
state dict against the inference build's). Plus: what the rewrite does (folds,
dropout and drop-path gone, channels_last), the key mapping of ``Net.fold``,
strict weight loading, the CLI, and deployment (torch.export, ONNX, TorchScript).
"""

from __future__ import annotations

import pytest
import torch

import resdsl
from resdsl import zoo
from resdsl.cli import main
from resdsl.graph import op_node
from resdsl.passes.inference import inference_plan
from tests.parity import randomize

#: One variant per family, with the small-input overrides its spec allows.
FAMILIES = {
    "resnet18": {},
    "cifar_resnet20": {"size": 16},
    "preact_resnet164": {"n": 2, "size": 16},
    "unet_same": {"size": 32},
    "residual_mlp": {"depth": 2},
    "regnet_y_400mf": {"size": 32, "depth3": 1, "depth4": 1},
    "convnext_tiny": {"size": 32, "depth3": 1},
    "mobilenet_v2": {},
    "mobilenet_v3_large": {},
    "mnasnet0_5": {},
    "efficientnet_b0": {"size": 32, "depth": 0.4},
    "efficientnet_v2_s": {"size": 32, "n5": 1, "n6": 1},
    "resnext101_32x8d": {"size": 32, "layers3": 1},
    "r2plus1d_18": {"frames": 4, "size": 16},
    "wang_resnet": {},
    "vgg11_bn": {"size": 32},
    "squeezenet1_0": {"size": 64},
    "densenet121": {"size": 32, "b3": 2, "b4": 2},
    "shufflenet_v2_x0_5": {"size": 32},
    "transformer_encoder_pre_ln": {"seq": 4, "num_layers": 1},
    "gpt2": {"layers": 1, "seq": 8},
    "vit_b_16": {"image": 32, "depth": 1},
    "swin_t": {"size": 32, "depth3": 1},
}

#: Parameters that select a small input, where a spec has them (the slow run).
SMALL = {"size": 32, "image": 32, "frames": 4, "seq": 8}
GIANT = 150_000_000


def _small(name: str) -> dict:
    declared = {p.name for p in zoo.load(name).ir.params}
    return {k: v for k, v in SMALL.items() if k in declared}


def _overrides(name: str) -> dict:
    return FAMILIES.get(name, _small(name))


def check_exact(net: resdsl.Net, batch: int = 2, tolerance: float = 1e-4) -> float:
    """The inference build against the training build in eval mode; returns the error
    relative to the output's scale."""
    train = net.build().eval()
    randomize(train, seed=1)
    fast = net.build(inference=True, weights=train.state_dict())
    assert not fast.training
    x = net.sample_input(batch, seed=2)
    with torch.no_grad():
        want, got = train(x), fast(x)
    assert got.shape == want.shape and got.is_contiguous()
    scale = want.abs().max().item()
    assert scale > 1e-6, "an all-zero output would prove nothing"
    error = (got - want).abs().max().item() / scale
    assert error <= tolerance, f"{net.name}: relative error {error:.2e}"
    return error


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exact_one_per_family(name):
    check_exact(zoo.load(name, **FAMILIES[name]))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo.names() if n not in FAMILIES])
def test_exact_every_zoo_model(name):
    net = zoo.load(name, **_overrides(name))
    if net.num_params > GIANT:  # structure only: the folded keys and shapes are the build's
        with torch.device("meta"):
            state = net.build(device="meta").state_dict()
        folded = net.fold(state)
        built = net.build(inference=True, device="meta").state_dict()
        assert list(folded) == list(built)
        assert all(folded[k].shape == built[k].shape for k in built)
        return
    check_exact(net, batch=1)
