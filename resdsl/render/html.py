"""The interactive page: ``resdsl render SPEC -o net.html``.

One self-contained HTML file: inline SVGs laid out by Graphviz (``dot``, else
``graphviz-pure``), inline CSS and JavaScript, a Content-Security-Policy that
forbids every network request; it works from ``file://``.

How it expands: the page holds pre-laid-out views of one network at mixed
levels. The first view draws every stage (or top-level block) as one box; for
each such box that holds more than itself, one view draws it opened (its blocks,
or, when blocks are the coarsest boxes as in a U-Net, its ops) inside a frame
while the others stay closed; a last view opens everything. Clicking a closed box
shows its view, clicking inside the opened frame (or Escape) closes it again: one
box is open at a time, so the page holds ``groups + 2`` drawings, not ``2^groups``.
Hovering a box shows its shape, parameters, MACs and the spec line that made it;
the search box highlights the boxes whose label (or module path, or, for a closed
box, the labels it holds) contains the text.

Bounded: at most :data:`MAX_GROUPS` openable boxes (more: the page opens all at
once), each view under the layout cap (:data:`~resdsl.render.dot.MAX_LAYOUT_SIZE`;
a view over it is left out and its box says so), and the page under
:data:`MAX_PAGE_BYTES`. Deterministic: the same spec gives the same bytes.

>>> import resdsl
>>> net = resdsl.loads('network t:\\n    input x: [4]\\n    fc: linear 2\\n')
>>> [key for key, _ in page_views(net.graph)]
['']
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import networkx as nx

from ..analysis.report import node_macs
from ..graph import containers, op_node
from ..shapes import format_dims
from .dot import (MAX_LAYOUT_SIZE, DrawingTooLarge, View, _box_paths, _group_of, _node_id, _prefixes,
                  build_view, layout_size, title, view_dot)

MAX_GROUPS = 32  # openable boxes drawn one view each; past it the page opens all at once
MAX_PAGE_BYTES = 16 * 2**20  # a page over this is refused (the zoo's largest is well under 1 MB)
MAX_SOURCE_LINE = 200  # characters of a spec line shown on hover


def _under(paths: Iterable[str], group: str) -> set[str]:
    return {p for p in paths if p == group or p.startswith(group + ".")}


def openable(graph: nx.DiGraph) -> tuple[set[str], set[str], list[str]]:
    """The closed boxes (stage level), the boxes they open into (block level, or none
    when blocks are the coarsest boxes: a U-Net's boxes open into their ops), and the
    closed boxes that hold more than themselves, in drawing order."""
    boxes = containers(graph)
    coarse = _box_paths(graph, "stage")
    fine = _box_paths(graph, "block")
    if fine == coarse:
        fine = set()
    groups = sorted((g for g in coarse if _under(fine, g) != {g}),
                    key=lambda p: (boxes[p].input, boxes[p].output, p))
    return coarse, fine, groups


def page_views(graph: nx.DiGraph) -> list[tuple[str, View]]:
    """The page's views, in order: ``""`` (all closed), one per openable box (its
    path), ``"*"`` (all open). Views over the layout cap are left out, except the first.

    >>> import resdsl
    >>> net = resdsl.load("resdsl/zoo/resnet50.res")
    >>> [key for key, _ in page_views(net.graph)]
    ['', 'layer1', 'layer2', 'layer3', 'layer4', '*']
    """
    coarse, fine, groups = openable(graph)
    closed = build_view(graph, level="block", boxes=coarse, summarised=coarse)
    if layout_size(closed) > MAX_LAYOUT_SIZE:
        name = graph.graph.get("name", "network")
        raise DrawingTooLarge(f"the page of '{name}' would draw {layout_size(closed):,} (layout size) "
                              f"with every stage closed, over the {MAX_LAYOUT_SIZE:,} Graphviz lays out "
                              "in seconds; write a .dot file")
    views = [("", closed)]
    if not groups:
        return views
    if len(groups) <= MAX_GROUPS:
        for group in groups:
            rest = set(coarse) - {group}
            views.append((group, build_view(graph, level="block", boxes=rest | _under(fine, group),
                                            summarised=rest, expanded={group})))
    views.append(("*", build_view(graph, level="block", boxes=fine, expanded=groups)))
    return [(key, view) for key, view in views if key == "" or layout_size(view) <= MAX_LAYOUT_SIZE]


MAX_SOURCE_BYTES = 4 * 2**20  # a spec file read back for its lines (the spec limit's default is 1 MiB)


def read_sources(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """The text of each spec file (the spec and its imports), by the name spans use,
    for the lines shown on hover: read at most :data:`MAX_SOURCE_BYTES` each; a file
    that cannot be read shows its location only."""
    sources: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SOURCE_BYTES)
        except OSError:
            continue
        text = data.decode("utf-8", "replace")
        sources[os.fspath(path)] = text
        sources.setdefault(str(Path(path).resolve()), text)
    return sources


def _source_line(sources: Mapping[str, str], file: str, line: int) -> str:
    lines = sources.get(file, "").splitlines()
    if not 0 < line <= len(lines):
        return ""
    text = lines[line - 1].strip()
    return text if len(text) <= MAX_SOURCE_LINE else text[:MAX_SOURCE_LINE - 3] + "..."


def _si(number: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(number) >= scale:
            return f"{number / scale:.2f}{unit}"
    return str(number)


def _node_info(graph: nx.DiGraph, view: View, key: str, groups: list[str], opened: str,
               sources: Mapping[str, str], macs: Callable[[int], int]) -> dict[str, Any]:
    """What hovering one drawn node shows, and what clicking it does."""
    boxes = containers(graph)
    vnode = view.nodes[key]
    members = [n for n, k in view.node_of.items() if k == key]
    first = op_node(graph, vnode.order)
    box = boxes.get(vnode.tooltip) if vnode.kind in ("block", "run", "stage") else None
    if vnode.kind == "run":
        box = boxes.get(_run_first(vnode.tooltip))
    span = box.span if box is not None else first.span
    group = _group_of(box.path if box is not None else first.container, set(groups)) or ""
    label = vnode.label + ((", " if vnode.plain else "\n") + ", ".join(vnode.folded) if vnode.folded else "")
    info = {"label": label, "kind": vnode.kind, "path": vnode.tooltip,
            "shape": format_dims(op_node(graph, vnode.last).shape),
            "params": f"{sum(op_node(graph, n).params for n in members):,}",
            "macs": _si(sum(macs(n) for n in members)), "ops": len(members),
            "where": f"{span.file}:{span.line}" if span.line else "",
            "line": _source_line(sources, span.file, span.line)}
    if group and group != opened and box is not None and box.path == group:
        info["open"] = group
    elif group and opened in (group, "*"):
        info["close"] = 1
    return info


def _run_first(run_path: str) -> str:
    """``layer2.1-3`` (a run's tooltip) -> ``layer2.1``."""
    head, _, tail = run_path.rpartition(".")
    first = tail.split("-")[0]
    return f"{head}.{first}" if head else first


def _search_text(graph: nx.DiGraph, views: list[tuple[str, View]]) -> dict[str, str]:
    """Per openable box, the labels it holds when open: a closed box is found by them too."""
    found: dict[str, list[str]] = {}
    for key, view in views:
        if key in ("", "*"):
            continue
        for vnode in sorted(view.nodes.values(), key=lambda n: n.order):
            container = op_node(graph, vnode.order).container
            if any(p == key for p in _prefixes(container)):
                found.setdefault(key, []).append(vnode.label)
    return {key: "\n".join(labels) for key, labels in found.items()}


def page(graph: nx.DiGraph, draw: Callable[[str], bytes], *, shapes: bool = True, layout: str = "auto",
         sources: Mapping[str, str] | None = None) -> str:
    """The page's HTML text. ``draw`` lays out DOT text into SVG bytes (a renderer's
    ``render(text, "svg")``); ``sources`` maps a spec file name to its text, for the
    spec line shown on hover.

    >>> import resdsl
    >>> from resdsl.render import find_renderer
    >>> net = resdsl.loads('network t:\\n    input x: [4]\\n    fc: linear 2\\n')
    >>> text = page(net.graph, lambda dot: find_renderer("svg").render(dot, "svg"))
    >>> text.startswith("<!DOCTYPE html>"), "default-src 'none'" in text  # no request leaves the page
    (True, True)
    """
    sources = sources or {}
    views = page_views(graph)
    groups = openable(graph)[2]
    cache: dict[int, int] = {}

    def macs(node: int) -> int:
        if node not in cache:
            cache[node] = node_macs(graph, node)
        return cache[node]

    data: dict[str, Any] = {"views": [], "held": _search_text(graph, views)}
    parts = []
    for index, (key, view) in enumerate(views):
        svg = draw(view_dot(graph, view, level="block", layout=layout, shapes=shapes)).decode("utf-8")
        svg = svg[svg.find("<svg"):] if "<svg" in svg else svg  # no XML prolog inside HTML
        data["views"].append({"key": key, "nodes": {k: _node_info(graph, view, k, groups, key, sources, macs)
                                                    for k in sorted(view.nodes)}})
        hidden = "" if index == 0 else " hidden"
        parts.append(f'<div class="view" id="view-{index}" data-key="{html.escape(key)}"{hidden}>\n{svg}</div>')
    text = _TEMPLATE.format(title=html.escape(title(graph, "interactive").replace(" (interactive level)", "")),
                            css=_CSS, views="\n".join(parts), data=_json(data), script=_SCRIPT,
                            opens="" if len(views) < 2 else _OPENS)
    if len(text.encode("utf-8")) > MAX_PAGE_BYTES:
        raise DrawingTooLarge(f"the page of '{graph.graph.get('name', 'network')}' is "
                              f"{len(text.encode('utf-8')):,} bytes, over {MAX_PAGE_BYTES:,}; "
                              "write .svg at --level stage or block instead")
    return text


def _json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survive literally."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_OPENS = "click a stage to open it, click inside the frame or press Escape to close it"

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<input id="search" type="search" placeholder="search labels" autocomplete="off">
<span id="count"></span>
<button id="open-all" type="button">open all</button>
<button id="close-all" type="button">close all</button>
<span class="hint">{opens}</span>
</header>
<main id="views">
{views}
</main>
<div id="info" hidden></div>
<script type="application/json" id="resdsl-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_CSS = """
body { margin: 0; font: 14px Helvetica, Arial, sans-serif; color: #222; }
header { position: sticky; top: 0; z-index: 2; background: #f7f7f7; border-bottom: 1px solid #ccc;
  padding: 6px 10px; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
h1 { font-size: 15px; margin: 0 8px 0 0; }
#search { width: 16em; }
.hint { color: #666; font-size: 12px; }
main { padding: 8px; overflow: auto; }
.view[hidden] { display: none; }
g.node { cursor: default; }
g.node.opens, g.node.closes { cursor: pointer; }
g.node.opens:hover polygon, g.node.opens:hover path { stroke: #1f77b4; stroke-width: 2.5; }
g.node.hit polygon, g.node.hit ellipse, g.node.hit path { stroke: #e6007e; stroke-width: 4; }
#info { position: fixed; z-index: 3; max-width: 32em; background: #fffff0; border: 1px solid #999;
  padding: 6px 8px; font-size: 12px; box-shadow: 2px 2px 6px rgba(0,0,0,.2); pointer-events: none;
  white-space: pre-wrap; }
#info b { font-size: 13px; }
#info code { font-size: 11px; color: #444; }
"""

# Plain DOM JavaScript (no library, no network); the SVG's node ids come from each
# node's <title>, which Graphviz and graphviz-pure both write.
_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("resdsl-data").textContent);
  var views = Array.prototype.slice.call(document.querySelectorAll(".view"));
  var byKey = {};
  var info = document.getElementById("info");
  var search = document.getElementById("search");
  var count = document.getElementById("count");
  views.forEach(function (div, i) {
    byKey[div.getAttribute("data-key")] = div;
    var nodes = data.views[i].nodes;
    div.querySelectorAll("g.node").forEach(function (g) {
      var title = g.querySelector("title");
      var key = title ? title.textContent : "";
      if (title) { title.remove(); }
      g.querySelectorAll("a").forEach(function (a) {
        a.removeAttributeNS("http://www.w3.org/1999/xlink", "title");
        a.removeAttribute("title");
      });
      var base = key.replace(/__title$/, "");
      var node = nodes[key] || nodes[base];
      if (!node) { return; }
      g.setAttribute("data-key", key);
      if (key === base) {  // a frame's title is no match of its own: its first box is
        var text = node.label + "\n" + node.path + "\n" + (data.held[node.open || ""] || "");
        g.setAttribute("data-search", text.toLowerCase());
      }
      if (node.open) { g.classList.add("opens"); }
      if (node.close) { g.classList.add("closes"); }
      g.addEventListener("click", function (event) {
        event.stopPropagation();
        if (node.open) { show(byKey[node.open] ? node.open : "*"); }
        else if (node.close) { show(""); }
      });
      g.addEventListener("mousemove", function (event) { hover(node, event); });
      g.addEventListener("mouseleave", function () { info.hidden = true; });
    });
  });

  function current() { return views.filter(function (v) { return !v.hidden; })[0]; }

  function show(key) {
    var target = byKey[key] || byKey[""];
    views.forEach(function (v) { v.hidden = v !== target; });
    info.hidden = true;
    find();
  }

  function hover(node, event) {
    var lines = ["<b>" + esc(node.label) + "</b>"];
    if (node.path) { lines.push("module: " + esc(node.path)); }
    lines.push("output: " + esc(node.shape));
    lines.push("parameters: " + node.params + "    MACs: " + node.macs + "    ops: " + node.ops);
    if (node.where) { lines.push(esc(node.where) + (node.line ? "  <code>" + esc(node.line) + "</code>" : "")); }
    if (node.open) { lines.push("click to open"); }
    else if (node.close) { lines.push("click to close"); }
    info.innerHTML = lines.join("\n");
    info.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    if (x + info.offsetWidth > window.innerWidth) { x = Math.max(0, event.clientX - info.offsetWidth - 14); }
    if (y + info.offsetHeight > window.innerHeight) { y = Math.max(0, event.clientY - info.offsetHeight - 14); }
    info.style.left = x + "px";
    info.style.top = y + "px";
  }

  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function find() {
    var query = search.value.trim().toLowerCase();
    var hits = 0;
    views.forEach(function (v) {
      v.querySelectorAll("g.node[data-search]").forEach(function (g) {
        var hit = query !== "" && g.getAttribute("data-search").indexOf(query) >= 0;
        g.classList.toggle("hit", hit);
        if (hit && !v.hidden) { hits += 1; }
      });
    });
    count.textContent = query === "" ? "" : hits + (hits === 1 ? " match" : " matches");
  }

  search.addEventListener("input", find);
  document.getElementById("open-all").addEventListener("click", function () { show(byKey["*"] ? "*" : ""); });
  document.getElementById("close-all").addEventListener("click", function () { show(""); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { show(""); }
  });
  window.resdslPage = { show: show, current: function () { return current().getAttribute("data-key"); } };
})();
"""
