"""`--style paper`: the DOT has what the papers' figures have (He et al. 2015 fig. 3 for
ResNet-34, Ronneberger et al. 2015 fig. 1 for U-Net)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import resdsl
from resdsl.cli import main
from resdsl.render import RenderOptionError, to_dot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def resnet34_paper():
    return to_dot(resdsl.load(ROOT / "resdsl" / "zoo" / "resnet34.res").graph, style="paper")


@pytest.fixture(scope="module")
def unet_paper(unet_net):
    return to_dot(unet_net.graph, style="paper")


def _edges(text: str, kind: str) -> list[tuple[str, str]]:
    body = text.split("subgraph cluster_legend")[0]
    return re.findall(rf'^\s*(\w+) -> (\w+) \[kind="{kind}"', body, re.M)


def test_resnet34_has_he_et_al_figure_3(resnet34_paper):
    text = resnet34_paper
    labels = re.findall(r'^\s*n\d+ \[label="([^"]*)"', text, re.M)
    assert labels[:3] == ["image", "7x7 conv, 64, /2", "3x3 max pool, /2"] and labels[-2:] == ["avg pool", "fc 1000"]
    convs = [label for label in labels if "3x3 conv" in label]
    assert len(convs) == 32  # 16 basic blocks of two convolutions: nothing but layers drawn
    assert convs.count("3x3 conv, 128, /2") == 1 and convs.count("3x3 conv, 512, /2") == 1
    assert not any(word in text for word in ("batch norm", "relu", '"+"'))  # convolutions only
    skips = _edges(text, "skip-identity") + _edges(text, "skip-projection")
    assert len(skips) == 16 and len(set(skips)) == 16  # a skip arc per block, each its own
    projections = re.findall(r'kind="skip-projection", [^\]]*style=dashed[^\]]*tailport=e', text)
    assert len(projections) == 3  # dashed, where the size changes
    assert re.findall(r'label="output size: (\d+)"', text) == ["224", "112", "56", "28", "14", "7", "1"]
    assert "1x1 conv" not in text.split("subgraph cluster_legend")[0]  # the projection is its dashed arc


def test_unet_has_ronneberger_et_al_figure_1(unet_paper):
    text = unet_paper
    legend = text.split("subgraph cluster_legend")[1]
    entries = dict(re.findall(r'label="([^"]+)"\];\n\s*legend_\d+_a -> legend_\d+_b \[legend=true, color="([^"]+)"',
                              legend))
    assert set(entries) == {"3x3 conv, relu", "2x2 max pool, /2", "2x2 up-conv", "1x1 conv", "copy and crop"}
    assert len(set(entries.values())) == 5  # each op its own colour
    body = text.split("subgraph cluster_legend")[0]
    colour_of = {colour: name for name, colour in entries.items()}
    arrows = re.findall(r'kind="(?:op|long-concat)", color="([^"]+)"', body)
    counts = {colour_of[c]: arrows.count(c) for c in set(arrows)}
    assert counts == {"3x3 conv, relu": 18, "2x2 max pool, /2": 4, "2x2 up-conv": 4, "1x1 conv": 1,
                      "copy and crop": 4}
    assert '<B>64</B><BR/><FONT POINT-SIZE="9" COLOR="#444444">568x568</FONT>' in body  # channels over size
    assert "{rank=same;" in body  # pinned on the U's grid


def test_paper_style_is_deterministic_and_checked(resnet34_paper, tmp_path):
    spec = ROOT / "resdsl" / "zoo" / "resnet34.res"
    assert to_dot(resdsl.load(spec).graph, style="paper") == resnet34_paper
    with pytest.raises(RenderOptionError, match="unknown style"):
        to_dot(resdsl.load(spec).graph, style="poster")
    out = tmp_path / "r34.dot"
    assert main(["render", str(spec), "-o", str(out), "--style", "paper"]) == 0
    assert out.read_text() == resnet34_paper
