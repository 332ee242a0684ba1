"""Every example of LANGUAGE.md parses, validates, compiles and builds as described."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import resdsl
from resdsl.graph import op_nodes
from resdsl.syntax.text import parse_text
from resdsl.syntax.yaml import parse_yaml

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "language"
LANGUAGE_MD = EXAMPLES / "LANGUAGE.md"  # language v1, vendored: the suite needs nothing outside the repo


def _blocks(fence: str) -> list[str]:
    text = LANGUAGE_MD.read_text()
    return re.findall(rf"```{fence}\n(.*?)```", text, re.S)


def test_copies_are_verbatim():
    plain = _blocks("")
    assert (EXAMPLES / "resnet50.res").read_text() in plain
    assert (EXAMPLES / "unet.res").read_text() in plain
    assert (EXAMPLES / "resnet18.yaml").read_text() in _blocks("yaml")


def test_resnet50_example_builds_with_torchvision_keys():
    torchvision = pytest.importorskip("torchvision")
    net = resdsl.load(EXAMPLES / "resnet50.res")
    assert net.num_params == 25_557_032
    model = net.build()
    reference = torchvision.models.resnet50()
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True)


@pytest.mark.parametrize(
    "defines, shape",
    [({}, (2, 388, 388)), ({"pad": 1, "size": 512}, (2, 512, 512)), ({"pad": 1}, (2, 560, 560))],
)
def test_unet_example_shapes(defines, shape):
    net = resdsl.load(EXAMPLES / "unet.res", **defines)
    assert net.output_shape == shape
    assert net.num_params == 31_030_658


def test_unet_center_crops_match_the_paper():
    """REFERENCE.md: skip tensors 64->56, 136->104, 280->200, 568->392."""
    net = resdsl.load(EXAMPLES / "unet.res")
    crops = {}
    for data in op_nodes(net.graph):
        if data.op == "concat":
            current, skip = data.in_shapes
            crops[skip[0]] = (skip[1], current[1])
    assert crops == {64: (568, 392), 128: (280, 200), 256: (136, 104), 512: (64, 56)}


def test_yaml_example_is_resnet18():
    torchvision = pytest.importorskip("torchvision")
    net = resdsl.load(EXAMPLES / "resnet18.yaml")
    assert net.num_params == 11_689_512
    reference = torchvision.models.resnet18()
    model = net.build()
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval(), reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


RESNET18_TEXT = """\
network resnet18(num_classes: int = 1000):
    defaults conv(bias=false)
    input x: [3, 224, 224]
    block basic(out: int, stride: int = 1):
        residual:
            conv1: conv 3x3, out, stride=stride
            bn1: batchnorm
            relu
            conv2: conv 3x3, out
            bn2: batchnorm
        relu
    conv1: conv 7x7, 64, stride=2
    bn1: batchnorm
    relu
    maxpool: maxpool 3x3, stride=2, pad=1
    layer1: stage basic(64) x 2
    layer2: stage basic(128) x 2, stride=2
    layer3: stage basic(256) x 2, stride=2
    layer4: stage basic(512) x 2, stride=2
    avgpool: adaptive_avgpool 1
    flatten
    fc: linear num_classes
"""


def test_yaml_and_text_give_equal_ir():
    from_yaml = parse_yaml((EXAMPLES / "resnet18.yaml").read_text(), "r.yaml").networks[0]
    from_text = parse_text(RESNET18_TEXT, "r.res").networks[0]
    assert from_yaml == from_text
    # Spans differ (they are positions in two different files) but do not count.
    assert from_yaml.body[0].span.file != from_text.body[0].span.file


def test_yaml_and_text_ir_differ_when_a_statement_differs():
    from_yaml = parse_yaml((EXAMPLES / "resnet18.yaml").read_text(), "r.yaml").networks[0]
    changed = parse_text(RESNET18_TEXT.replace("x 2, stride=2", "x 3, stride=2", 1), "r.res").networks[0]
    assert from_yaml != changed
