"""docs/zoo.md states the truth: its table of every zoo model (reference, spec, parameters)
and its brevity table (issue 14 item 5: each family's spec, with the std modules it
imports, has fewer lines than the Python that torchvision uses to define that family).
Both are computed here; the tests fail when a spec, the registry or torchvision changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import resdsl.zoo
from tests.brevity import python_lines, spec_lines

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "resdsl" / "zoo"
TV = "torchvision.models"
EFFICIENTNET = ["_MBConvConfig", "MBConvConfig", "MBConv", "EfficientNet", "_efficientnet", "_efficientnet_conf"]
RESNET = ["conv3x3", "conv1x1", "Bottleneck", "ResNet", "_resnet"]

#: spec -> (torchvision module, the definitions of that family's architecture)
FAMILIES = {
    "resnet_bottleneck": (f"{TV}.resnet", [*RESNET, "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
                                           "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d",
                                           "resnext101_64x4d"]),
    "mobilenet_v2": (f"{TV}.mobilenetv2", ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]),
    "mobilenet_v3": (f"{TV}.mobilenetv3", ["InvertedResidualConfig", "InvertedResidual", "MobileNetV3",
                                           "_mobilenet_v3_conf", "_mobilenet_v3", "mobilenet_v3_large",
                                           "mobilenet_v3_small"]),
    "mnasnet": (f"{TV}.mnasnet", ["_InvertedResidual", "_stack", "_round_to_multiple_of", "_get_depths",
                                  "MNASNet", "_mnasnet", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"]),
    "efficientnet": (f"{TV}.efficientnet", [*EFFICIENTNET, *(f"efficientnet_b{i}" for i in range(8))]),
    "efficientnet_v2": (f"{TV}.efficientnet", [*EFFICIENTNET, "FusedMBConvConfig", "FusedMBConv",
                                               "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"]),
    "regnet": (f"{TV}.regnet", ["SimpleStemIN", "BottleneckTransform", "ResBottleneckBlock", "AnyStage",
                                "BlockParams", "RegNet", "_regnet",
                                *(f"regnet_{k}_{s}" for k, s in [
                                    ("y", "400mf"), ("y", "800mf"), ("y", "1_6gf"), ("y", "3_2gf"), ("y", "8gf"),
                                    ("y", "16gf"), ("y", "32gf"), ("y", "128gf"), ("x", "400mf"), ("x", "800mf"),
                                    ("x", "1_6gf"), ("x", "3_2gf"), ("x", "8gf"), ("x", "16gf"), ("x", "32gf")])]),
    "convnext": (f"{TV}.convnext", ["LayerNorm2d", "CNBlock", "CNBlockConfig", "ConvNeXt", "_convnext",
                                    "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]),
    "vgg": (f"{TV}.vgg", ["VGG", "make_layers", "cfgs", "_vgg", *(f"vgg{d}{bn}" for d in (11, 13, 16, 19)
                                                                 for bn in ("", "_bn"))]),
    "squeezenet": (f"{TV}.squeezenet", ["Fire", "SqueezeNet", "_squeezenet", "squeezenet1_0", "squeezenet1_1"]),
    "densenet": (f"{TV}.densenet", ["_DenseLayer", "_DenseBlock", "_Transition", "DenseNet", "_densenet",
                                    "densenet121", "densenet161", "densenet169", "densenet201"]),
    "shufflenet_v2": (f"{TV}.shufflenetv2", ["channel_shuffle", "InvertedResidual", "ShuffleNetV2",
                                             "_shufflenetv2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
                                             "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]),
    "vit": (f"{TV}.vision_transformer", ["MLPBlock", "EncoderBlock", "Encoder", "VisionTransformer",
                                         "_vision_transformer", "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32",
                                         "vit_h_14"]),
    "swin": (f"{TV}.swin_transformer", ["_patch_merging_pad", "_get_relative_position_bias", "PatchMerging",
                                        "shifted_window_attention", "ShiftedWindowAttention", "SwinTransformerBlock",
                                        "SwinTransformer", "_swin_transformer", "swin_t", "swin_s", "swin_b",
                                        "PatchMergingV2", "ShiftedWindowAttentionV2", "SwinTransformerBlockV2",
                                        "swin_v2_t", "swin_v2_s", "swin_v2_b"]),
    "video_resnet": (f"{TV}.video.resnet", ["Conv3DSimple", "Conv2Plus1D", "Conv3DNoTemporal", "BasicBlock",
                                            "BasicStem", "R2Plus1dStem", "VideoResNet", "_video_resnet",
                                            "r3d_18", "mc3_18", "r2plus1d_18"]),
}


def rows() -> list[str]:
    out = []
    for family, (module, names) in FAMILIES.items():
        ours, theirs = spec_lines(ZOO / f"{family}.res"), python_lines(module, names)
        out.append(f"| `{family}.res` | {ours} | `{module}` | {theirs} | {ours / theirs:.2f} |")
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_spec_is_shorter_than_torchvision(family):
    module, names = FAMILIES[family]
    ours, theirs = spec_lines(ZOO / f"{family}.res"), python_lines(module, names)
    assert 0 < ours < theirs, f"{family}: spec {ours} lines, torchvision {theirs}"


def test_docs_state_the_counts():
    text = (ROOT / "docs" / "zoo.md").read_text()
    missing = [row for row in rows() if row not in text]
    assert not missing, "docs/zoo.md's brevity table is out of date; its rows are:\n" + "\n".join(rows())


def model_rows() -> list[str]:
    """One row per zoo entry: name, reference, spec and overrides, parameter count."""
    out = []
    for entry in resdsl.zoo.ENTRIES:
        defines = " ".join(f"`{d}`" for d in re.findall(r"-D \S+", entry.defines()))  # spelled as -D takes them
        spec = f"`{entry.spec.rsplit('/', 1)[-1]}`" + (f" {defines}" if defines else "")
        reference = f"`{entry.reference}`" if entry.constructor else entry.reference
        out.append(f"| `{entry.name}` | {reference} | {spec} | {resdsl.zoo.load(entry.name).num_params:,} |")
    return out


def test_docs_list_every_model_with_its_count():
    text = (ROOT / "docs" / "zoo.md").read_text()
    missing = [row for row in model_rows() if row not in text]
    assert not missing, "docs/zoo.md's table of models is out of date; its rows are:\n" + "\n".join(model_rows())


def test_readme_counts_the_zoo():
    text = (ROOT / "README.md").read_text()
    assert f"{len(resdsl.zoo.ENTRIES)} models" in text
    assert "| `efficientnet.res` | 65 |" in (ROOT / "docs" / "zoo.md").read_text()  # the README's figure
