"""Three zoo families reproduced exactly: torchvision's bottleneck ResNets (one spec for
ResNet-50/101/152, Wide ResNet-50/101-2, ResNeXt-50/101), the video ResNets
(r3d_18, mc3_18, r2plus1d_18: one spec) and Wang et al.'s 1-D time-series ResNet
(checked against a reference module written below from the paper and its Keras code).

Every check goes through tests/parity.py. The default suite builds small inputs (the
nets pool globally, so the counts and keys do not depend on the size) and the giants
only on the meta device; full-size parity of the large variants is marked slow.
"""

from __future__ import annotations

import json
import importlib.util
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.graph import op_nodes, residual_units  # noqa: E402
from tests.parity import check_keys, check_parity, randomize, sample  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
BOTTLENECK = ZOO / "resnet_bottleneck.res"
VIDEO = ZOO / "video_resnet.res"
WANG = ZOO / "wang_resnet.res"

# torchvision's ResNet(Bottleneck, layers, groups, width_per_group) arguments per builder.
BOTTLENECK_VARIANTS: dict[str, dict[str, int]] = {
    "resnet50": {},
    "resnet101": {"layers3": 23},
    "resnet152": {"layers2": 8, "layers3": 36},
    "wide_resnet50_2": {"width_per_group": 128},
    "wide_resnet101_2": {"layers3": 23, "width_per_group": 128},
    "resnext50_32x4d": {"groups": 32, "width_per_group": 4},
    "resnext101_32x8d": {"layers3": 23, "groups": 32, "width_per_group": 8},
    "resnext101_64x4d": {"layers3": 23, "groups": 64, "width_per_group": 4},
}
VIDEO_VARIANTS = {"r3d_18": "r3d", "mc3_18": "mc3", "r2plus1d_18": "r2plus1d"}
SMALL_CLIP = {"frames": 4, "size": 32}  # [3, 4, 32, 32]: every stride still has room


def _torchvision(name: str, device: str = "cpu") -> nn.Module:
    with torch.device(device):
        if name in VIDEO_VARIANTS:
            return getattr(torchvision.models.video, name)(weights=None)
        return getattr(torchvision.models, name)(weights=None)


def _defines(params: dict[str, Any]) -> list[str]:
    return [arg for k, v in params.items() for arg in ("-D", f"{k}={v}")]


def _header(path: Path) -> str:
    """The comment block a spec starts with."""
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return "\n".join(lines[:end])


# ---- Wang, Yan & Oates 2017: a reference module written from the paper -----------------------

def _keras_norm(channels: int) -> nn.BatchNorm1d:
    """Keras's BatchNormalization defaults: epsilon 1e-3, momentum 0.99 (torch's 0.01)."""
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


class WangBlock(nn.Module):
    """conv8-bn-relu, conv5-bn-relu, conv3-bn, "same" padding; plus the shortcut
    (1x1 conv + bn where the width changes, bn alone where it does not); relu."""

    def __init__(self, cin: int, out: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(cin, out, 8, padding="same"), _keras_norm(out)
        self.conv2, self.bn2 = nn.Conv1d(out, out, 5, padding="same"), _keras_norm(out)
        self.conv3, self.bn3 = nn.Conv1d(out, out, 3, padding="same"), _keras_norm(out)
        project = [nn.Conv1d(cin, out, 1)] if cin != out else []
        self.shortcut = nn.Sequential(*project, _keras_norm(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + self.shortcut(x))


class WangResNet(nn.Module):
    def __init__(self, channels_in: int = 1, classes: int = 2):
        super().__init__()
        self.block1 = WangBlock(channels_in, 64)
        self.block2 = WangBlock(64, 128)
        self.block3 = WangBlock(128, 128)
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block3(self.block2(self.block1(x)))
        return self.fc(y.mean(dim=-1))  # global average pooling over time


WANG_SETTINGS = [{}, {"length": 57, "channels_in": 3, "classes": 5}]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on copies
@pytest.mark.parametrize("params", WANG_SETTINGS, ids=["default", "multichannel_odd_length"])
def test_wang_resnet_reproduces_the_reference(params: dict[str, int]):
    net = resdsl.load(WANG, **params)
    reference = WangResNet(params.get("channels_in", 1), params.get("classes", 2))
    check_parity(net, reference, train=True)
    assert net.input_shape == (params.get("channels_in", 1), params.get("length", 128))
    assert [u.shortcut for u in residual_units(net.graph)] == ["explicit"] * 3
    kernels = [d.args["kernel"] for d in op_nodes(net.graph) if d.op == "conv" and not d.shortcut]
    assert kernels == [(8,), (5,), (3,)] * 3


def test_wang_header_states_the_default_count():
    count = sum(p.numel() for p in WangResNet().parameters())
    assert resdsl.load(WANG).num_params == count
    assert f"{count:,}" in _header(WANG)


# ---- torchvision video ResNets ------------------------------------------------------------------

@pytest.fixture(scope="module", params=list(VIDEO_VARIANTS))
def video(request) -> tuple[str, resdsl.Net]:
    name = request.param
    return name, resdsl.load(VIDEO, variant=VIDEO_VARIANTS[name], **SMALL_CLIP)


def test_video_keys_shapes_counts_on_meta(video):
    name, net = video
    check_keys(net.build(device="meta"), _torchvision(name, "meta"))
    assert net.num_params == sum(p.numel() for p in _torchvision(name, "meta").parameters())
    assert f"{net.num_params:,}" in _header(VIDEO)


def test_video_small_clip_parity(video):
    """Strict load, eval and train outputs, inferred shapes, at [3, 4, 32, 32]."""
    name, net = video
    check_parity(net, _torchvision(name), train=name == "r3d_18")


def test_r2plus1d_mid_channels_follow_each_block_input():
    """Conv2Plus1D's mid width comes from the block's input for both convs of a block:
    layer2.0 (64 -> 128) uses 230 twice, layer2.1 (128 -> 128) 288 twice."""
    net = resdsl.load(VIDEO, variant="r2plus1d", **SMALL_CLIP)
    widths = {d.module: d.shape[0] for d in op_nodes(net.graph) if d.op == "conv"}
    assert [widths[f"layer2.{b}.conv{c}.0.0"] for b in (0, 1) for c in (1, 2)] == [230, 230, 288, 288]


def test_mc3_is_3d_only_in_layer1():
    net = resdsl.load(VIDEO, variant="mc3", **SMALL_CLIP)
    kernels = {d.module: d.args["kernel"] for d in op_nodes(net.graph) if d.op == "conv"}
    assert kernels["layer1.1.conv2.0"] == (3, 3, 3)
    assert {kernels[f"layer{i}.0.conv1.0"] for i in (2, 3, 4)} == {(1, 3, 3)}
    assert {kernels[f"layer{i}.0.downsample.0"] for i in (2, 3, 4)} == {(1, 1, 1)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VIDEO_VARIANTS))
def test_video_full_clip_parity(name: str):
    """The published input, [3, 16, 112, 112]."""
    check_parity(resdsl.load(VIDEO, variant=VIDEO_VARIANTS[name]), _torchvision(name), batch=1)


# ---- torchvision bottleneck ResNets ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(BOTTLENECK_VARIANTS))
def test_bottleneck_keys_shapes_counts_on_meta(name: str):
    net = resdsl.load(BOTTLENECK, **BOTTLENECK_VARIANTS[name])
    reference = _torchvision(name, "meta")
    check_keys(net.build(device="meta"), reference)
    count = sum(p.numel() for p in reference.parameters())
    assert net.num_params == count
    assert re.search(rf"\| {name} .*\| +{count:,} \|", _header(BOTTLENECK))


def test_bottleneck_small_input_parity():
    """The family's grouped 3x3 path with the cheapest grouped variant, at 64x64."""
    net = resdsl.load(BOTTLENECK, size=64, **BOTTLENECK_VARIANTS["resnext50_32x4d"])
    check_parity(net, _torchvision("resnext50_32x4d"), batch=1, train=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2"])
def test_bottleneck_101_parity(name: str):
    """At the published 224x224."""
    net = resdsl.load(BOTTLENECK, **BOTTLENECK_VARIANTS[name])
    check_parity(net, _torchvision(name), batch=1)


# ---- tools on every new spec: plain twins, render, analyze, code generation, --weights ------------

TOOL_CASES = [
    (WANG, {}),
    (VIDEO, {"variant": "r2plus1d", **SMALL_CLIP}),
    (VIDEO, {"variant": "mc3", **SMALL_CLIP}),
    (BOTTLENECK, {"size": 64, **BOTTLENECK_VARIANTS["resnext101_32x8d"]}),
]
TOOL_IDS = ["wang", "r2plus1d", "mc3", "resnext101_32x8d"]


@pytest.mark.parametrize("path, params", TOOL_CASES, ids=TOOL_IDS)
def test_plain_twin_loses_only_the_skips(path: Path, params: dict[str, Any]):
    net, plain = resdsl.load(path, **params), resdsl.load(path, plain=True, **params)
    assert all(unit.shortcut == "none" for unit in residual_units(plain.graph))
    assert len(residual_units(plain.graph)) == len(residual_units(net.graph))
    assert plain.num_params == net.num_params - sum(d.params for d in op_nodes(net.graph) if d.shortcut)
    assert plain.output_shape == net.output_shape


@pytest.mark.parametrize("path, params", TOOL_CASES, ids=TOOL_IDS)
def test_cli_check_plain_render_analyze(path: Path, params: dict[str, Any], tmp_path, capsys):
    defines = _defines(params)
    assert main(["check", str(path), "--plain", *defines]) == 0
    dot = tmp_path / "net.dot"
    assert main(["render", str(path), "-o", str(dot), *defines]) == 0
    assert "digraph" in dot.read_text()
    capsys.readouterr()
    assert main(["analyze", str(path), "--json", *defines]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == resdsl.load(path, **params).num_params


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The bottleneck family's code paths (grouped convs, projections) at one block per stage.
CODEGEN_CASES = [*TOOL_CASES[:3], (BOTTLENECK, {"size": 32, "layers1": 1, "layers2": 1, "layers3": 1,
                                                "layers4": 1, "groups": 32, "width_per_group": 4})]


@pytest.mark.parametrize("path, params", CODEGEN_CASES, ids=[*TOOL_IDS[:3], "resnext_1111"])
def test_generated_standalone_file_reproduces_the_outputs(path: Path, params: dict[str, Any], tmp_path):
    net = resdsl.load(path, **params)
    out = tmp_path / "model.py"
    assert main(["compile", str(path), *_defines(params), "-o", str(out)]) == 0
    module = _import(out)
    (cls,) = [v for v in vars(module).values() if inspect.isclass(v) and v.__module__ == module.__name__
              and issubclass(v, nn.Module) and v.__name__.lower() == net.name.replace("_", "")]
    written, built = cls().eval(), net.build().eval()
    randomize(built)
    written.load_state_dict(built.state_dict(), strict=True)
    x = sample(net)
    with torch.no_grad():
        torch.testing.assert_close(written(x), built(x), rtol=0, atol=0)


WEIGHT_CASES = [
    (WANG, {}, lambda: WangResNet()),
    (VIDEO, {"variant": "r2plus1d", **SMALL_CLIP}, lambda: _torchvision("r2plus1d_18")),
    (BOTTLENECK, {"size": 64, **BOTTLENECK_VARIANTS["resnext50_32x4d"]}, lambda: _torchvision("resnext50_32x4d")),
]


@pytest.mark.parametrize("path, params, reference", WEIGHT_CASES, ids=["wang", "r2plus1d", "resnext50"])
def test_weights_load_a_reference_state_dict_strictly(path: Path, params, reference, tmp_path, capsys):
    """`compile --weights` loads the reference's state dict with strict=True (parity above
    shows the loaded net computes the reference's outputs)."""
    weights = tmp_path / "weights.pt"
    torch.save(reference().state_dict(), weights)
    assert main(["compile", str(path), *_defines(params), "--weights", str(weights)]) == 0
    assert "shapes match" in capsys.readouterr().out
    broken = reference().state_dict()
    broken.popitem()
    torch.save(broken, weights)
    assert main(["compile", str(path), *_defines(params), "--weights", str(weights)]) != 0
