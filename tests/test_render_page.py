"""The interactive page (`resdsl render SPEC -o net.html`): its bytes, and its behaviour in
headless Chromium (tests/browser.py drives it over the DevTools pipe).

The browser tests need Debian's `chromium` (.ci/run installs it) and a layout program;
without them they skip, saying why. One browser serves the module.

The screenshot is compared coarsely: both images are made grayscale and averaged down
to 50x40 cells of 20x20 pixels; a cell has changed when its mean moved by more than
CELL_LEVELS (24 of 255), and at most SCREENSHOT_TOLERANCE (2%) of the cells may change.
Measured on the reference page (ResNet-50, closed stages, 1000x800): the diagram's
text in a serif font changes 0.3% of the cells, in a monospace font 1.2% (fonts differ
between machines); one stage box hidden changes 3.1%, the diagram moved 40 px right
5.6%, graphviz-pure's layout instead of dot's 2.8% (so the test needs dot, as CI has),
a stage opened 14.5%, a blank page 15.5%. Regenerate the reference with
RESDSL_REGEN_GOLDEN=1 (then look at it).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import resdsl
from resdsl.cli import main
from resdsl.render import find_renderer
from resdsl.render.html import MAX_PAGE_BYTES, _json, page, page_views

from browser import Browser, chromium

ROOT = Path(__file__).resolve().parent.parent
RESNET50 = ROOT / "resdsl" / "zoo" / "resnet50.res"
UNET = ROOT / "resdsl" / "zoo" / "unet.res"
GOLDEN = ROOT / "tests" / "golden" / "render"
CELL_LEVELS = 24  # a 20x20-pixel cell "changed": its gray mean moved by over 24 of 255 levels
SCREENSHOT_TOLERANCE = 0.02  # at most 2% of the 2,000 cells changed (see the module docstring)

needs_renderer = pytest.mark.skipif(find_renderer("svg") is None, reason="no Graphviz dot or graphviz-pure")
needs_browser = pytest.mark.skipif(chromium() is None or find_renderer("svg") is None,
                                   reason="no chromium (apt-get install chromium) or no layout program")


def _data(text: str) -> dict:
    return json.loads(re.search(r'id="resdsl-data">(.*?)</script>', text, re.S).group(1))


@needs_renderer
def test_page_is_self_contained_deterministic_and_bounded(tmp_path):
    out = tmp_path / "r50.html"
    assert main(["render", str(RESNET50), "-o", str(out)]) == 0
    first = out.read_bytes()
    assert main(["render", str(RESNET50), "-o", str(out)]) == 0
    assert out.read_bytes() == first  # same spec, same bytes
    text = first.decode()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text  # no request can leave
    assert not re.search(r'(src|href)\s*=\s*"(https?:|//)', text) and "<link" not in text
    assert "url(" not in text and "@import" not in text
    assert len(first) < MAX_PAGE_BYTES and text.count('class="view"') == 6  # closed, 4 stages, all open
    data = _data(text)
    layer2 = data["views"][0]["nodes"]["g_layer2"]
    assert layer2["open"] == "layer2" and layer2["params"] == "1,219,584" and layer2["macs"] == "1.03G"
    assert layer2["where"].endswith("resnet50.res:29") and layer2["line"].startswith("layer2: stage bottleneck")


def test_page_views_open_blocks_or_ops(unet_net):
    net = resdsl.load(RESNET50)
    views = dict(page_views(net.graph))
    assert {v.label for v in views["layer3"].nodes.values() if v.kind == "run"} == {"bottleneck(256, 1024) x 5"}
    assert "layer2: bottleneck(128, 512) x 4, /2\n1 projection + 3 identity skips" in \
        {v.label for v in views["layer3"].nodes.values()}  # the others stay closed
    unet = dict(page_views(unet_net.graph))  # blocks are U-Net's coarsest boxes: they open into ops
    assert list(unet)[1:3] == ["enc1", "enc2"] and list(unet)[-1] == "*"
    opened = [v.label for v in unet["enc2"].nodes.values() if v.cluster == "enc2"]
    assert opened and all("conv" in label or "pool" in label for label in opened)


def test_page_data_cannot_close_its_script():
    hostile = {"label": "</script><script>alert(1)</script>", "line": "a & b > c"}
    text = _json(hostile)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == hostile


@needs_renderer
def test_net_render_html(tmp_path):
    net = resdsl.load(RESNET50)
    result = net.render(tmp_path / "x.html")
    assert result.path.name == "x.html" and result.renderer in ("dot", "graphviz-pure")
    assert result.path.read_text().startswith("<!DOCTYPE html>")


# ---- in the browser -----------------------------------------------------------------
@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    if chromium() is None or find_renderer("svg") is None:
        pytest.skip("no chromium or no layout program")
    folder = tmp_path_factory.mktemp("page")
    renderer = find_renderer("svg")
    out = {}
    for name, spec in (("resnet50", RESNET50), ("unet", UNET)):
        net = resdsl.load(spec)
        out[name] = folder / f"{name}.html"
        out[name].write_text(page(net.graph, lambda dot: renderer.render(dot, "svg")))
    return out


@pytest.fixture(scope="module")
def browser(pages):
    with Browser(width=1000, height=800) as chrome:
        yield chrome


def _center(chrome: Browser, key: str) -> tuple[float, float]:
    box = chrome.evaluate(f"""(() => {{
        const g = document.querySelector('.view:not([hidden]) g.node[data-key="{key}"]');
        if (!g) return null;
        g.scrollIntoView({{block: "center"}});
        const r = g.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
    assert box is not None, f"{key} is not drawn in the view shown"
    return box[0], box[1]


def _shown(chrome: Browser) -> str:
    return chrome.evaluate("window.resdslPage.current()")


def _visible_text(chrome: Browser) -> str:
    return chrome.evaluate("document.querySelector('.view:not([hidden]) svg').textContent")


@needs_browser
def test_page_loads_without_console_errors(browser, pages):
    for name in ("resnet50", "unet"):
        browser.open(pages[name])
        assert browser.errors == [], browser.errors
        assert _shown(browser) == ""
        keyed = browser.evaluate("document.querySelectorAll('g.node[data-key]').length")
        assert keyed > 20  # the script found the SVG's nodes and bound them to the page's data


@needs_browser
def test_clicking_a_stage_opens_it_and_clicking_inside_closes_it(browser, pages):
    browser.open(pages["resnet50"])
    assert "bottleneck(128, 512) x 3" not in _visible_text(browser)
    browser.click(*_center(browser, "g_layer2"))
    assert _shown(browser) == "layer2"
    text = _visible_text(browser)
    assert "bottleneck(128, 512), /2" in text and "bottleneck(128, 512) x 3" in text  # its blocks
    assert "layer3: bottleneck(256, 1024) x 6, /2" in text  # the others stay closed
    browser.click(*_center(browser, "g_layer2_1"))
    assert _shown(browser) == ""
    browser.click(*_center(browser, "g_layer4"))
    assert _shown(browser) == "layer4"
    assert browser.errors == []


@needs_browser
def test_opening_a_unet_block_shows_its_ops(browser, pages):
    browser.open(pages["unet"])
    browser.click(*_center(browser, "g_enc2"))
    assert _shown(browser) == "enc2"
    assert _visible_text(browser).count("3x3 conv, 128") == 2
    assert browser.errors == []


@needs_browser
def test_search_highlights_matching_boxes(browser, pages):
    browser.open(pages["resnet50"])
    browser.evaluate("document.getElementById('search').focus()")
    browser.type_text("bottleneck(256")
    hits = browser.evaluate("Array.from(document.querySelectorAll('.view:not([hidden]) g.node.hit'))"
                            ".map(g => g.getAttribute('data-key'))")
    assert hits == ["g_layer3"]  # the closed stage holds the matching blocks
    assert browser.evaluate("document.getElementById('count').textContent") == "1 match"
    browser.click(*_center(browser, "g_layer3"))
    hits = browser.evaluate("Array.from(document.querySelectorAll('.view:not([hidden]) g.node.hit'))"
                            ".map(g => g.getAttribute('data-key'))")
    assert hits == ["g_layer3_0", "g_layer3_1"]  # opened: its first block and the run of 5


@needs_browser
def test_hover_shows_shape_parameters_macs_and_spec_line(browser, pages):
    browser.open(pages["resnet50"])
    x, y = _center(browser, "g_layer2")
    browser.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
    shown = browser.evaluate("[document.getElementById('info').hidden, document.getElementById('info').textContent]")
    assert shown[0] is False
    for part in ("512x28x28", "parameters: 1,219,584", "MACs: 1.03G", "resnet50.res:29", "click to open"):
        assert part in shown[1], (part, shown[1])


@needs_browser
def test_screenshot_matches_the_stored_one(browser, pages):
    import io

    import numpy as np
    from PIL import Image, ImageOps

    if find_renderer("svg").name != "dot":
        pytest.skip("the stored screenshot was laid out by Graphviz's dot; graphviz-pure's layout differs")
    browser.open(pages["resnet50"])
    shot = browser.screenshot()
    golden = GOLDEN / "resnet50_page.png"
    if os.environ.get("RESDSL_REGEN_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(shot)

    def cells(data: bytes) -> np.ndarray:
        image = ImageOps.grayscale(Image.open(io.BytesIO(data)))
        assert image.size == (1000, 800)
        return np.asarray(image.resize((50, 40), Image.Resampling.BOX), dtype=float)

    now, then = cells(shot), cells(golden.read_bytes())
    changed = float((np.abs(now - then) > CELL_LEVELS).mean())
    assert changed < SCREENSHOT_TOLERANCE, f"{changed:.1%} of the cells changed (see the module docstring)"
    blank = float((np.abs(255 - then) > CELL_LEVELS).mean())
    assert blank > 5 * SCREENSHOT_TOLERANCE  # a blank page would fail: the check can fail
