"""The Swin Transformer family (issue 15): resdsl/zoo/swin.res reproduces torchvision's
swin_t, swin_s and swin_b exactly (tests/parity.py).

The default suite checks a small Swin in full (eval and train mode, odd map sizes that
pad windows and patch merging, shifted windows, dropout and stochastic depth on), every
variant's keys, shapes and counts on the meta device, and swin_t in full; swin_s and
swin_b in full are slow."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.swin_transformer import SwinTransformer

import resdsl
from tests.parity import check_keys, check_parity

SPEC = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "swin.res"
VARIANTS = [e.name for e in resdsl.zoo.ENTRIES if e.spec == "resdsl/zoo/swin.res"]
COUNTS = {"swin_t": 28_288_354, "swin_s": 49_606_258, "swin_b": 87_768_224}


def test_the_registry_lists_swin_t_s_and_b():
    assert set(VARIANTS) == set(COUNTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_keys_shapes_and_counts_on_meta(name):
    net = resdsl.zoo.load(name)
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)()
    model = net.build(device="meta")
    check_keys(model, reference)
    assert net.num_params == sum(p.numel() for p in reference.parameters()) == COUNTS[name]
    assert net.output_shape == (1000,)


def small(**params):
    """A Swin of every op at a size the default suite affords: a 4x4 window on 9x9 and
    then 5x5 and 3x3 maps (padding to whole windows, odd patch merging), heads 2 and 4."""
    args = dict(patch=4, dim=16, depth1=2, depth2=2, depth3=2, depth4=2, heads1=2, heads2=2, heads3=4,
                heads4=4, window=4, dropout=0.1, attention_dropout=0.1, stochastic_depth_prob=0.3,
                num_classes=10, size=36)
    args.update(params)
    net = resdsl.load(SPEC, **args)
    reference = SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4], window_size=[4, 4],
        dropout=0.1, attention_dropout=0.1, stochastic_depth_prob=0.3, num_classes=10)
    return net, reference


def test_a_small_swin_is_exact_in_eval_and_train_mode():
    net, reference = small()
    check_parity(net, reference, train=True)


def test_swin_t_is_exact():
    check_parity(resdsl.zoo.load("swin_t"), torchvision.models.swin_t(), batch=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_s", "swin_b"])
def test_torchvision_parity(name):
    check_parity(resdsl.zoo.load(name), getattr(torchvision.models, name)(), batch=1)
