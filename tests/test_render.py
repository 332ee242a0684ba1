"""`resdsl render`: DOT structure (edge kinds, legend, collapse counts, U rows), determinism,
and the renderer chain (dot, graphviz-pure, none). Pixels are looked at by people, not here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import resdsl
from resdsl import render as render_pkg
from resdsl.cli import main
from resdsl.render import graphviz as gv
from resdsl.render import to_dot

ROOT = Path(__file__).resolve().parent.parent
RESNET50 = ROOT / "resdsl" / "zoo" / "resnet50.res"
UNET = ROOT / "resdsl" / "zoo" / "unet.res"

CIFAR_A = """
network cifar(n: int = 3):
    defaults conv(bias=false)
    input x: [3, 32, 32]
    block basic(out: int, stride: int = 1):
        residual shortcut=A:
            conv1: conv 3x3, out, stride=stride
            bn1: batchnorm
            relu
            conv2: conv 3x3, out
            bn2: batchnorm
        relu
    conv1: conv 3x3, 16
    bn1: batchnorm
    relu
    layer1: stage basic(16) x n
    layer2: stage basic(32) x n, stride=2
    avgpool: adaptive_avgpool 1
    flatten
    fc: linear 10
"""

LONG_ADD = """
network fpn:
    input x: [8, 32, 32]
    top: conv 3x3, 8
    down: conv 3x3, 8, stride=2
    up: upsample 2
    add top
    gate: conv 1x1, 8
    mul top
"""


def edges(dot: str, kind: str | None = None) -> list[tuple[str, str]]:
    """(src, dst) of the drawn edges of ``kind``, legend excluded."""
    found = []
    for src, dst, attrs in re.findall(r"^\s*(\w+) -> (\w+) \[(.*)\];$", dot, re.M):
        if "legend=true" in attrs:
            continue
        if kind is None or f'kind="{kind}"' in attrs:
            found.append((src, dst))
    return found


def labels(dot: str) -> list[str]:
    """Node texts, lines joined by a written '\\n' (an HTML label's shape line left out)."""
    found = []
    for plain, html in re.findall(r'^\s*\w+ \[label=(?:"([^"]*)"|<(.*?)>), ', dot, re.M):
        found.append(plain if not html else html.split('<BR/><FONT')[0].replace("<BR/>", "\\n"))
    return found


def edge_labels(dot: str, kind: str) -> list[str]:
    """The texts on the drawn edges of ``kind`` (dot's padding spaces stripped)."""
    return ["\\n".join(part.strip() for part in text.split("\\n"))
            for text in re.findall(rf'kind="{kind}"[^\n]*?label="([^"]*)"', dot) if "legend=true" not in text]


def shapes_of(dot: str) -> dict[str, str]:
    """Node id -> the shape line under its text."""
    return dict(re.findall(r'^\s*(\w+) \[label=<.*?<FONT POINT-SIZE="9" COLOR="#555555">([^<]*)</FONT>>', dot, re.M))


@pytest.fixture(scope="module")
def resnet50():
    return resdsl.load(RESNET50)


@pytest.fixture(scope="module")
def unet():
    return resdsl.load(UNET)


def test_block_level_collapses_runs_and_types_skips(resnet50):
    dot = to_dot(resnet50.graph, level="block")
    boxes = [t for t in labels(dot) if t.startswith("bottleneck")]
    assert boxes == ["bottleneck(64, 256)", "bottleneck(64, 256) x 2",
                     "bottleneck(128, 512), /2", "bottleneck(128, 512) x 3",
                     "bottleneck(256, 1024), /2", "bottleneck(256, 1024) x 5",
                     "bottleneck(512, 2048), /2", "bottleneck(512, 2048) x 2"]
    counts = [int(t.rpartition(" x ")[2]) if " x " in t else 1 for t in boxes]
    assert sum(counts) == 16  # every block of 3 + 4 + 6 + 3 is on the page
    assert len(edges(dot, "skip-projection")) == 4  # one per stage start
    assert len(edges(dot, "skip-identity")) == 4  # one around each collapsed run
    # each block of a run has its own skip: the one arc drawn says so
    assert edge_labels(dot, "skip-identity") == ["each of 2", "each of 3", "each of 5", "each of 2"]
    assert "1x1 conv, 512, /2 + batch norm" in edge_labels(dot, "skip-projection")
    assert "cluster_legend" in dot and "projection skip (1x1 conv)" in dot and "identity skip" in dot
    assert "zero-pad" not in dot  # the legend names only the kinds drawn


def test_expand_draws_every_block(resnet50):
    dot = to_dot(resnet50.graph, level="block", expand=True)
    assert not any(" x " in t for t in labels(dot) if t.startswith("bottleneck"))
    assert len([t for t in labels(dot) if t.startswith("bottleneck")]) == 16
    assert len(edges(dot, "skip-identity")) == 12 and len(edges(dot, "skip-projection")) == 4


def test_skips_are_beside_the_main_path(resnet50):
    dot = to_dot(resnet50.graph, level="block")
    # the main path shares one group (drawn straight); skips do not pull on the layout
    assert all("weight=0" in line for line in dot.splitlines() if 'kind="skip-' in line and "legend" not in line)
    for src, dst in edges(dot, "skip-identity"):
        assert dst.endswith("__plus")  # a skip ends in a '+' after the box it goes around
    assert re.search(r'g_layer2_1 \[label=<bottleneck\(128, 512\) x 3<BR/>.*shape=box3d', dot)


def test_stage_level_one_box_per_stage(resnet50):
    dot = to_dot(resnet50.graph, level="stage")
    stages = [t for t in labels(dot) if "bottleneck" in t]
    assert stages == ["layer1: bottleneck(64, 256) x 3\\n1 projection + 2 identity skips",
                      "layer2: bottleneck(128, 512) x 4, /2\\n1 projection + 3 identity skips",
                      "layer3: bottleneck(256, 1024) x 6, /2\\n1 projection + 5 identity skips",
                      "layer4: bottleneck(512, 2048) x 3, /2\\n1 projection + 2 identity skips"]
    assert "7x7 conv, 64, /2\\nbatch norm, relu" in labels(dot)
    assert {"3x3 max pool, /2", "avg pool", "fc 1000"} <= set(labels(dot))
    assert edges(dot, "skip-identity") == [] and "cluster_legend" not in dot


def test_layer_level_every_op_blocks_as_clusters(resnet50):
    dot = to_dot(resnet50.graph, level="layer")
    nodes = re.findall(r"^\s*n\d+ \[", dot, re.M)
    assert len(nodes) == resnet50.graph.number_of_nodes()
    # frame titles sit beside the frame's first node; a stage's title joins its first block's
    assert dot.count('label="layer2: bottleneck x 4\\nlayer2.0: bottleneck(128, 512), /2"') == 1
    assert dot.count('label="layer2.1: bottleneck(128, 512)"') == 1
    assert dot.count("subgraph cluster_") == 4 + 16 + 1  # stages, blocks, legend
    # the projection's conv and bn are nodes on the skip, drawn as shortcut nodes
    assert len(edges(dot, "skip-projection")) == 4 * 3
    assert len(edges(dot, "skip-identity")) == 12


def test_zero_pad_skips_option_a():
    net = resdsl.loads(CIFAR_A, n=3)
    dot = to_dot(net.graph, level="block")
    assert len(edges(dot, "skip-zero-pad")) == 1 and edge_labels(dot, "skip-zero-pad") == ["zero-pad to 32, /2"]
    assert "zero-pad skip (option A)" in dot
    assert [t for t in labels(dot) if t.startswith("basic")] == [
        "basic(16) x 3", "basic(32), /2", "basic(32) x 2"]


def test_unet_long_concat_with_crop_and_u_rows(unet):
    dot = to_dot(unet.graph, level="block")
    concat = edges(dot, "long-concat")
    assert len(concat) == 4
    assert "long skip, copy and crop (concat)" in dot  # said once, in the legend
    assert shapes_of(dot)["g_enc1"] == "64x568x568"  # what is copied, on the box it leaves
    rows = re.findall(r"\{rank=same; ([^}]*)\}", dot)
    for src, dst in concat:  # long skips are horizontal: both ends on one row
        assert any(f"{src};" in row and f" {dst};" in row for row in rows)
    row_of = {key: i for i, row in enumerate(rows) for key in row.replace(";", "").split()}
    enc = [row_of[k] for k in ("g_enc1", "g_enc2", "g_enc3", "g_enc4", "g_bottom")]
    dec = [row_of[k] for k in ("g_dec4", "g_dec3", "g_dec2", "g_dec1")]
    assert enc == sorted(enc) and dec == sorted(dec, reverse=True)  # down the left, up the right
    assert "subgraph cluster_1 " not in dot  # no frames around pinned rows
    # the decoder goes up: its up-convs are written reversed (dir=back)
    assert dot.count("dir=back") == 4


def test_layouts_auto_and_forced(unet, resnet50):
    assert "rank=same" not in to_dot(unet.graph, layout="column")
    assert "dir=back" not in to_dot(resnet50.graph, layout="auto")
    assert "rank=same" in to_dot(unet.graph, layout="auto")


def test_long_add_and_mul():
    net = resdsl.loads(LONG_ADD)
    dot = to_dot(net.graph, level="layer")
    assert len(edges(dot, "long-add")) == 1 and len(edges(dot, "long-mul")) == 1
    assert "long skip, add" in dot and "long skip, multiply" in dot


def test_shapes_toggle(resnet50):
    with_shapes = to_dot(resnet50.graph, level="block", shapes=True)
    without = to_dot(resnet50.graph, level="block", shapes=False)
    assert shapes_of(with_shapes)["g_layer2_1"] == "512x28x28" and "512x28x28" not in without


def test_deterministic_dot(resnet50):
    again = resdsl.load(RESNET50)
    for level in ("stage", "block", "layer"):
        assert to_dot(resnet50.graph, level=level) == to_dot(again.graph, level=level)
    script = ("import resdsl, sys; sys.stdout.write(resdsl.load(sys.argv[1]).to_dot(level='layer'))")
    runs = {subprocess.run([sys.executable, "-c", script, str(UNET)], capture_output=True,
                           text=True, check=True, env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
            for seed in ("1", "2")}
    assert len(runs) == 1


def test_render_never_imports_torch():
    script = ("import sys, resdsl; n = resdsl.load(sys.argv[1]); n.to_dot(level='layer'); "
              "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(RESNET50)], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


def test_unknown_level_is_a_value_error(resnet50):
    with pytest.raises(ValueError, match="unknown level"):
        to_dot(resnet50.graph, level="op")


# ---- the renderer chain ----------------------------------------------------------------
def _no_renderer(monkeypatch):
    monkeypatch.setattr(gv.shutil, "which", lambda name: None)
    monkeypatch.setattr(gv, "_beside_python", lambda name: None)


def test_no_renderer_writes_dot_and_one_line(tmp_path, monkeypatch, capsys):
    _no_renderer(monkeypatch)
    out = tmp_path / "net.svg"
    assert main(["render", str(RESNET50), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert not out.exists() and (tmp_path / "net.dot").read_text().startswith('digraph "resnet50"')
    assert len(err.strip().splitlines()) == 1 and "apt-get install graphviz" in err
    assert "Traceback" not in err and "ExecutableNotFound" not in err


def test_python_render_warns_without_renderer(tmp_path, monkeypatch, resnet50):
    _no_renderer(monkeypatch)
    with pytest.warns(UserWarning, match="graphviz"):
        result = resnet50.render(tmp_path / "n.png")
    assert result.renderer is None and result.path == tmp_path / "n.dot"
    assert resnet50._repr_svg_() is None


def test_dot_output_needs_no_renderer(tmp_path, monkeypatch):
    _no_renderer(monkeypatch)
    out = tmp_path / "u.dot"
    assert main(["render", str(UNET), "-o", str(out), "--level", "layer", "--no-shapes"]) == 0
    assert "rank=same" in out.read_text()


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["render", str(RESNET50), "-o", str(tmp_path / "x.jpg")]) == 2
    assert main(["render", str(RESNET50), "-o", str(tmp_path / "missing" / "x.svg")]) == 2
    assert main(["render", str(RESNET50), "-o", str(RESNET50.with_suffix(".dot"))[:-4] + ".res"]) == 2
    assert main(["render", str(RESNET50), "-o", "x.svg", "--level", "op"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot tell the format" in err


def test_cli_spec_error(tmp_path, capsys):
    bad = tmp_path / "bad.res"
    bad.write_text("network bad:\n    input x: [3, 8, 8]\n    concat nothing\n")
    assert main(["render", str(bad), "-o", str(tmp_path / "bad.svg")]) == 1
    assert "nothing" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_dot_renders_svg_deterministically(tmp_path, capsys):
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    for out in (first, second):
        assert main(["render", str(UNET), "-o", str(out), "-D", "pad=1"]) == 0
    assert "(dot)" in capsys.readouterr().out
    assert first.read_bytes() == second.read_bytes() and b"<svg" in first.read_bytes()
    assert main(["render", str(RESNET50), "-o", str(tmp_path / "r.pdf"), "--level", "stage"]) == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def _pure() -> str | None:
    return shutil.which("graphviz-pure") or gv._beside_python("graphviz-pure")


@pytest.mark.skipif(_pure() is None, reason="graphviz-pure not installed")
def test_graphviz_pure_fallback(tmp_path, monkeypatch, capsys, resnet50):
    pure = _pure()
    monkeypatch.setattr(gv.shutil, "which", lambda name: pure if name == "graphviz-pure" else None)
    out = tmp_path / "r.png"
    assert main(["render", str(RESNET50), "-o", str(out)]) == 0
    assert "(graphviz-pure)" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG")
    svg = resnet50._repr_svg_()
    assert svg is not None and "<svg" in svg and svg == resnet50._repr_svg_()
    # graphviz-pure has no PDF: the .dot is written and the note says why
    result = render_pkg.render(resnet50.graph, tmp_path / "r.pdf")
    assert result.renderer is None and "PDF needs" in result.note
