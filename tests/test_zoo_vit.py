"""The Vision Transformer family (issue 15): resdsl/zoo/vit.res reproduces torchvision's
vit_b_16, vit_b_32, vit_l_16, vit_l_32 and vit_h_14 exactly (tests/parity.py).

The default suite checks a small ViT of the same code path in full (eval and train mode),
every variant's keys, shapes and counts on the meta device, and vit_b_32 in full; the
other full checks are slow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision

import resdsl
from resdsl.cli import main
from tests.parity import check_on_meta, check_parity

SPEC = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "vit.res"
VARIANTS = [e.name for e in resdsl.zoo.ENTRIES if e.spec == "resdsl/zoo/vit.res"]
COUNTS = {"vit_b_16": 86_567_656, "vit_b_32": 88_224_232, "vit_l_16": 304_326_632,
          "vit_l_32": 306_535_400, "vit_h_14": 632_045_800}


def test_the_registry_lists_every_torchvision_vit():
    listed = {n for n in dir(torchvision.models) if n.startswith("vit_")}
    assert set(VARIANTS) == listed == set(COUNTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_keys_shapes_and_counts_on_meta(name):
    net = resdsl.zoo.load(name)
    assert check_on_meta(net, getattr(torchvision.models, name)) == COUNTS[name]
    tokens = (224 // net.params["patch"]) ** 2 + 1
    assert net.output_shape == (1000,)
    assert tuple(net.build(device="meta").encoder.pos_embedding.shape) == (1, tokens, net.params["dim"])


def test_a_small_vit_is_exact_in_eval_and_train_mode():
    """Every op of the family at a size the default suite can afford, dropout on."""
    params = dict(image=32, patch=8, depth=2, heads=4, dim=64, mlp=128, dropout=0.1, attention_dropout=0.1,
                  num_classes=10)
    net = resdsl.load(SPEC, **params)
    reference = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, dropout=0.1,
        attention_dropout=0.1, num_classes=10)
    check_parity(net, reference, train=True)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n != "vit_b_32" else [])
                                  for n in sorted(COUNTS) if n != "vit_h_14"])
def test_torchvision_parity(name):
    net = resdsl.zoo.load(name)
    check_parity(net, getattr(torchvision.models, name)(), batch=1)


def test_generated_file_and_weights(tmp_path, capsys):
    params = ["-D", "image=32", "-D", "patch=8", "-D", "depth=2", "-D", "heads=4", "-D", "dim=64",
              "-D", "mlp=128"]
    reference = torchvision.models.VisionTransformer(32, 8, 2, 4, 64, 128)
    weights = tmp_path / "vit.pt"
    torch.save(reference.state_dict(), weights)
    assert main(["compile", str(SPEC), *params, "--weights", str(weights)]) == 0
    out = tmp_path / "vit.py"
    assert main(["compile", str(SPEC), *params, "-o", str(out)]) == 0
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # noqa: S102 - our generated file
    model = namespace["Vit"]().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x), rtol=0, atol=1e-5)
    assert main(["render", str(SPEC), *params, "--level", "block", "-o", str(tmp_path / "vit.dot")]) == 0
    assert main(["analyze", str(SPEC), *params]) == 0
    capsys.readouterr()


def test_the_diagram_draws_the_stream_and_its_attention_blocks():
    """Block level: ViT-B/16's 12 encoder blocks are one stacked box; layer level: each block
    shows its attention and the two identity skips of the residual stream."""
    block = resdsl.zoo.load("vit_b_16").to_dot(level="block")
    assert "encoder_block(12, 3072, 0, 0) x 12" in block
    small = resdsl.load(SPEC, image=32, patch=8, depth=2, heads=4, dim=64, mlp=128).to_dot(level="layer")
    assert small.count("4-head attention") == 2
    skips = re.findall(r'n\d+ -> n\d+ \[kind="skip-identity"', small)  # the legend's edge aside
    assert len(skips) == 4  # 2 blocks x (attention, MLP) on the stream
