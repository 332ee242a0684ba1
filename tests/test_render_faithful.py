"""Diagrams II: a faithful block level (a skip per block, the merge's activation, defining
arguments, projections and zero-pad named), clean labels (checked on the geometry of the
SVG Graphviz lays out), titles with overrides, PNG warnings, --dpi and honest hints."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import resdsl
from diagram_geometry import collisions, parse
from resdsl.cli import main
from resdsl.render import graphviz as gv
from resdsl.render import is_u_shaped, render, to_dot
from test_render import edge_labels, edges, labels, shapes_of

ZOO = Path(__file__).resolve().parent.parent / "resdsl" / "zoo"
HAS_DOT = shutil.which("dot") is not None


@pytest.fixture(scope="module")
def nets() -> dict[str, resdsl.Net]:
    return {}


def _net(nets: dict, name: str, **params) -> resdsl.Net:
    key = (name, tuple(sorted(params.items())))
    if key not in nets:
        nets[key] = resdsl.load(ZOO / f"{name}.res", **params)
    return nets[key]


def test_the_activation_after_the_add_is_on_the_merge(nets):
    post = labels(to_dot(_net(nets, "resnet50").graph))
    pre = labels(to_dot(_net(nets, "preact_resnet").graph))
    assert post.count("+, relu") == 8 and "+" not in post  # one merge per drawn box or run
    assert pre.count("+") == 6 and not any(t.startswith("+,") for t in pre)


def test_defining_arguments_are_shown(nets):
    resnext = to_dot(_net(nets, "resnext50_32x4d").graph)
    wide = to_dot(_net(nets, "wide_resnet50_2").graph)
    assert "bottleneck(128, 256, groups=32) x 2" in labels(resnext)
    assert "bottleneck(128, 256) x 2" in labels(wide)
    body = [line for line in resnext.splitlines()[2:]]
    assert body != [line for line in wide.splitlines()[2:]]
    mobile = labels(to_dot(_net(nets, "mobilenet_v3").graph))
    assert "bneck(5, 72, 40, se=true, relu), /2" in mobile  # kernel, expansion, SE: they vary


def test_float_arguments_do_not_split_runs(nets):
    """ConvNeXt's drop-path rate grows per block: the boxes still collapse by stage."""
    dot = to_dot(_net(nets, "convnext").graph)
    assert [t for t in labels(dot) if t.startswith("cnblock")] == [
        "cnblock x 3", "cnblock x 3", "cnblock x 9", "cnblock x 3"]
    assert edge_labels(dot, "skip-identity") == ["each of 3", "each of 3", "each of 9", "each of 3"]


def test_zero_pad_in_its_own_style_with_its_stride(nets):
    net = _net(nets, "cifar_resnet")
    block = to_dot(net.graph, level="block")
    assert edge_labels(block, "skip-zero-pad") == ["zero-pad to 32, /2", "zero-pad to 64, /2"]
    layer = to_dot(net.graph, level="layer")
    pads = re.findall(r'^\s*n\d+ \[label=<zero-pad to (\d+), /2<BR/>.*style="rounded,filled,dotted".*#7b3294', layer, re.M)
    assert pads == ["32", "64"]
    assert "#d95f02" not in layer  # nothing in projection colours: option A has no projection


def test_squeeze_excitation_is_a_side_branch(nets):
    net = _net(nets, "mobilenet_v3")
    assert not is_u_shaped(net.graph)  # pooling to 1x1 and multiplying back is no U
    dot = to_dot(net.graph, level="layer")
    gates = re.findall(r'^\s*(\w+) -> (\w+) \[kind="long-mul", color="black".*weight=8', dot, re.M)
    assert len(gates) == 8  # large: 8 blocks with SE; the gated tensor is the straight path
    pools = [line for line in dot.splitlines() if "avg pool<BR/>" in line and 'tooltip="features.' in line]
    assert len(pools) == 8 and not [line for line in pools if "group=main" in line]  # off the main path
    assert "long skip, multiply" not in dot  # the legend names no gate as a long skip


def test_title_names_the_overrides(nets):
    assert 'label="cifar_resnet, n=18 (block level)"' in to_dot(_net(nets, "cifar_resnet", n=18).graph)
    assert 'label="cifar_resnet (stage level)"' in to_dot(_net(nets, "cifar_resnet").graph, level="stage")


def test_frame_titles_beside_their_first_node(nets):
    dot = to_dot(_net(nets, "resnet50").graph)
    assert not re.search(r'subgraph cluster_\d+ \{\n\s*label="[^"]', dot)  # no title on a frame's edge
    assert re.search(r'g_layer2_0__title \[label="layer2: bottleneck x 4", shape=plaintext', dot)
    assert "{rank=same; g_layer2_0__title; g_layer2_0;}" in dot


def test_shapes_are_in_the_boxes(nets):
    dot = to_dot(_net(nets, "resnet50").graph)
    shapes = shapes_of(dot)
    assert shapes["g_layer2_0"] == "512x28x28" and shapes["n1"] == "64x112x112"
    assert "fc 1000" in labels(dot) and "n175" not in shapes  # "fc 1000" says 1000 already
    assert not [line for line in dot.splitlines() if 'kind="data"' in line and "label=" in line]


# ---- label hygiene on the laid-out SVG -------------------------------------------------
GEOMETRY = [(name, level) for name in ("resnet50", "resnext50_32x4d", "cifar_resnet", "preact_resnet",
                                       "convnext", "regnet", "mobilenet_v3", "efficientnet", "vit",
                                       "swin", "gpt", "densenet", "video_resnet", "residual_mlp",
                                       "transformer_encoder", "unet")
            for level in ("stage", "block")] + [(name, "layer") for name in ("cifar_resnet", "unet")]


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot not installed")
@pytest.mark.parametrize("name,level", GEOMETRY)
def test_no_label_struck_or_on_a_node(nets, name, level):
    svg = gv.find_renderer("svg").render(to_dot(_net(nets, name).graph, level=level), "svg")
    layout = parse(svg)
    assert len(layout.texts) >= 3 and layout.edges
    assert collisions(layout) == []


def test_the_checker_sees_a_struck_label():
    """The geometry check can fail: an edge through a text box, a text on a node."""
    svg = b"""<svg xmlns="http://www.w3.org/2000/svg"><g class="graph">
    <g class="node"><title>a</title><polygon points="0,0 40,0 40,20 0,20"/><text x="20" y="14" font-size="10" text-anchor="middle">a</text></g>
    <g class="edge"><title>a-&gt;b</title><path d="M60,-10C60,0 60,10 60,40"/><text x="60" y="15" font-size="9" text-anchor="middle">label</text></g>
    <g class="edge"><title>c-&gt;d</title><path d="M200,0C200,0 200,0 200,0"/><text x="20" y="12" font-size="9">on a</text></g>
    </g></svg>"""
    found = collisions(parse(svg))
    assert any("'label' struck by edge a->b" in f for f in found)
    assert any("'on a' on node a" in f for f in found)


# ---- PNG warnings, --dpi, hints ---------------------------------------------------------
def test_png_scaled_by_graphviz_is_said(tmp_path, monkeypatch, capsys):
    """dot's own words (Graphviz 2.43-12) become one warning naming the cures."""
    said = b"dot: graph is too large for cairo-renderer bitmaps. Scaling by 0.682489 to fit\n"
    monkeypatch.setattr(gv, "find_renderer", lambda fmt="svg": gv.Renderer("dot", "dot", ("svg", "png")))
    monkeypatch.setattr(gv, "_run", lambda *args: (b"\x89PNG", said))
    import resdsl.render
    monkeypatch.setattr(resdsl.render, "find_renderer", gv.find_renderer)
    assert main(["render", str(ZOO / "resnet18.res"), "-o", str(tmp_path / "big.png")]) == 0
    err = capsys.readouterr().err
    assert "warning: the PNG was over Graphviz's 32,767-pixel limit and was scaled by 0.68" in err
    assert "--dpi" in err and (tmp_path / "big.png").read_bytes() == b"\x89PNG"


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot not installed")
def test_dpi_sets_the_png_resolution(tmp_path, capsys):
    small, normal = tmp_path / "small.png", tmp_path / "normal.png"
    assert main(["render", str(ZOO / "cifar_resnet.res"), "--level", "stage", "--dpi", "48", "-o", str(small)]) == 0
    assert main(["render", str(ZOO / "cifar_resnet.res"), "--level", "stage", "-o", str(normal)]) == 0
    assert "warning" not in capsys.readouterr().err
    width = int.from_bytes(small.read_bytes()[16:20], "big")
    assert abs(int.from_bytes(normal.read_bytes()[16:20], "big") - 2 * width) <= 4  # 96 dpi: twice as wide


def test_dpi_out_of_range_is_a_usage_error(tmp_path, capsys):
    assert main(["render", str(ZOO / "resnet18.res"), "--dpi", "5000", "-o", str(tmp_path / "x.png")]) == 2
    assert "--dpi 5000 is outside 24-600" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_pdf_without_dot_names_graphviz_and_keeps_an_existing_dot(tmp_path, monkeypatch, capsys, nets):
    monkeypatch.setattr(gv.shutil, "which", lambda name: "/bin/true" if name == "graphviz-pure" else None)
    (tmp_path / "x.dot").write_text("mine")
    assert main(["render", str(ZOO / "resnet18.res"), "-o", str(tmp_path / "x.pdf")]) == 2
    err = capsys.readouterr().err
    assert (tmp_path / "x.dot").read_text() == "mine"
    assert "graphviz-pure, found here, writes only SVG and PNG" in err and "pip install graphviz-pure" not in err
    result = render(_net(nets, "resnet18").graph, tmp_path / "y.pdf")
    assert result.renderer is None and result.path == tmp_path / "y.dot" and "install Graphviz for PDF" in result.note


def _pure() -> str | None:
    return shutil.which("graphviz-pure") or gv._beside_python("graphviz-pure")


@pytest.mark.parametrize("program", ["dot", "graphviz-pure"])
@pytest.mark.parametrize("level", ["block", "layer"])
def test_unet_is_a_wide_u_with_both_renderers(nets, program, level):
    """Block and layer level: wider than tall, at most 2.5:1 (the paper's figure is 1.5:1;
    the old rows of one resolution each made 7:1, the layer level's columns 0.5:1)."""
    executable = shutil.which("dot") if program == "dot" else _pure()
    if executable is None:
        pytest.skip(f"{program} not installed")
    dot = to_dot(_net(nets, "unet").graph, level=level)
    svg = gv.Renderer(program, executable, ("svg",)).render(dot, "svg")
    width, height = (float(v) for v in re.search(rb'width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    assert 1.0 <= width / height <= 2.5, (width, height)


def test_attention_is_set_apart_on_the_stream():
    """Attention (which mixes tokens) is tinted by its catalogue entry; the per-token
    layers around it on the residual stream are not (issue 18 item 6)."""
    import re

    for name, word in (("vit_b_16", "attention"), ("swin_t", "window attention")):
        dot = resdsl.zoo.load(name).to_dot(level="layer")
        tinted = re.findall(r'label=<([^<]*)<BR/>.*?fillcolor="#fff2cc"', dot) + re.findall(
            r'label="([^"]*)", [^\n]*fillcolor="#fff2cc"', dot)
        assert tinted and all(word in label for label in tinted), tinted[:3]
        assert 'fillcolor="#fff2cc"' not in "".join(
            line for line in dot.splitlines() if "layer norm" in line or "fc " in line)
