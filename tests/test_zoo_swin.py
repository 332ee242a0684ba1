"""The Swin Transformer family (issue 15): resdsl/zoo/swin.res reproduces torchvision's
swin_t, swin_s, swin_b and swin_v2_t, swin_v2_s, swin_v2_b exactly (tests/parity.py).

The default suite checks a small Swin in full (eval and train mode, odd map sizes that
pad windows and patch merging, shifted windows, dropout and stochastic depth on), every
variant's keys, shapes and counts on the meta device, and swin_t and swin_v2_t in full;
the others in full are slow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.swin_transformer import (
    PatchMergingV2, SwinTransformer, SwinTransformerBlockV2,
)

import resdsl
from resdsl.analysis import analyze
from resdsl.analysis.report import receptive_fields
from resdsl.backends.codegen import generate
from tests.located import error, located
from tests.parity import check_on_meta, check_parity, randomize

SPEC = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "swin.res"
VARIANTS = [e.name for e in resdsl.zoo.ENTRIES if e.spec == "resdsl/zoo/swin.res"]
COUNTS = {"swin_t": 28_288_354, "swin_s": 49_606_258, "swin_b": 87_768_224,
          "swin_v2_t": 28_351_570, "swin_v2_s": 49_737_442, "swin_v2_b": 87_930_848}


def test_the_registry_lists_every_torchvision_swin():
    listed = {n for n in dir(torchvision.models) if n.startswith("swin_") and n != "swin_transformer"}
    assert set(VARIANTS) == listed == set(COUNTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_keys_shapes_and_counts_on_meta(name):
    net = resdsl.zoo.load(name)
    assert check_on_meta(net, getattr(torchvision.models, name)) == COUNTS[name]
    assert net.output_shape == (1000,)


def small(v2: bool = False):
    """A Swin of every op at a size the default suite affords: a 4x4 window on 9x9 and
    then 5x5 and 3x3 maps (padding to whole windows, odd patch merging), heads 2 and 4."""
    net = resdsl.load(SPEC, patch=4, dim=16, depth1=2, depth2=2, depth3=2, depth4=2, heads1=2, heads2=2,
                      heads3=4, heads4=4, window=4, dropout=0.1, attention_dropout=0.1,
                      stochastic_depth_prob=0.3, num_classes=10, size=36, v2=v2)
    versions = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    reference = SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4], window_size=[4, 4],
        dropout=0.1, attention_dropout=0.1, stochastic_depth_prob=0.3, num_classes=10, **versions)
    return net, reference


@pytest.mark.parametrize("v2", [False, True])
def test_a_small_swin_is_exact_in_eval_and_train_mode(v2):
    net, reference = small(v2)
    check_parity(net, reference, train=True)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in ("swin_t", "swin_v2_t") else [pytest.mark.slow])
                                  for n in sorted(COUNTS)])
def test_torchvision_parity(name):
    check_parity(resdsl.zoo.load(name), getattr(torchvision.models, name)(), batch=1)


# ---- the ops: located errors, generated code, MACs, receptive field -------------------------


def spec(shape: str, *lines: str) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f"network n:\n    input x: {shape}\n{body}"


def test_window_op_errors_are_located():
    located(error(spec("[14, 14, 30]", "window_attention 4")), 3, 22, "4 heads do not divide the width 30")
    located(error(spec("[14, 14, 32]", "window_attention 4, window=7, shift=7")), 3, 35,
            "not less than the window", "shift=3")
    located(error(spec("[32, 14]", "window_attention 4")), 3, 5, "channels-last map [H, W, C]", "permute 1, 2, 0")
    located(error(spec("[8, 14, 14, 32]", "patch_merge")), 3, 5, "channels-last map", "permute")
    located(error(spec("[14, 14, 32]", "window_attention 4, window=1, v2=true")), 3, 25, "at least 2", "window=8")


def test_generated_file_reproduces_torchvision(tmp_path):
    net, reference = small()
    source = generate(net)
    assert "class ShiftedWindowAttention" in source.text and "def _patch_merging_pad" in source.text
    assert "import resdsl" not in source.text and "import torchvision" not in source.text
    path = tmp_path / "swin.py"
    path.write_text(source.text)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our generated file
    model = namespace[source.class_name]().eval()
    reference.eval()
    randomize(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 36, 36)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size, shift, v2", [(14, 3, False), (9, 2, False), (3, 2, False), (14, 3, True)])
def test_window_attention_macs_are_torchs_matmuls(size, shift, v2):
    """Projections, QK^T and AV on the map padded to whole windows (a 3x3 map: one 7x7 window
    pads it, and the shift is dropped), V2's position bias MLP, as torch.utils.flop_counter
    counts them."""
    window = 7 if size != 9 else 4
    net = resdsl.loads(spec(f"[{size}, {size}, 32]",
                            f"window_attention 4, window={window}, shift={shift}, v2={str(v2).lower()}"))
    model = net.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, size, size, 32))
    assert analyze(net).macs == counter.get_total_flops() // 2


def test_patch_merge_widens_the_receptive_field_along_h_and_w():
    net = resdsl.loads(spec("[3, 32, 32]", "conv 4, 8, stride=4, pad=0", "permute 1, 2, 0", "patch_merge",
                            "permute 2, 0, 1", "conv 3, 8"))
    assert net.output_shape == (8, 4, 4)
    assert receptive_fields(net.graph)[net.graph.graph["output"]] == (24, 24)  # 4, 4 + 4, 8 + 2 x 8
    odd = resdsl.loads(spec("[5, 7, 6]", "patch_merge"))
    assert odd.output_shape == (3, 4, 24)
