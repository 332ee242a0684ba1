"""``--style paper``: the figures of the two papers people copy, from the spec's graph.

- a column network is drawn as He et al. 2015, Fig. 3 (ResNet-34): every weighted
  layer and pooling as one box (``3x3 conv, 128, /2``), norms and activations left
  out, a curved skip per residual unit (solid: identity, dashed: projection, dotted:
  zero-pad; the projection's own 1x1 conv is the dashed arc), and ``output size: 28``
  beside the first layer of each resolution;
- a U-Net (see :func:`~resdsl.render.dot.is_u_shaped`) as Ronneberger et al. 2015,
  Fig. 1: each feature map a box with its channel count over its size, each op an
  arrow coloured by its kind (``3x3 conv, relu``, ``2x2 max pool, /2``, ...), the long
  skips grey (``copy and crop``), and a legend of the arrows; encoder down the left,
  decoder up the right (the U layout of :mod:`resdsl.render.dot`).

What is drawn is decided by the op catalogue (``Diagram``): ops drawn as boxes
(``fold="none"``) are layers or arrows, folded ops (norms, activations) are not; no
op is named here. Deterministic like the default style.

>>> import resdsl
>>> net = resdsl.load("resdsl/zoo/resnet34.res")
>>> text = paper_dot(net.graph)
>>> text.count("tailport=e"), text.count("style=dashed, tailport=e"), '"3x3 conv, 128, /2"' in text
(16, 3, True)
"""

from __future__ import annotations

import networkx as nx

from ..graph import op_edge, op_node, op_nodes, residual_units
from ..ops import REGISTRY
from ..shapes import format_dims
from .dot import (EDGE_STYLE, FONT, LONG_SKIPS, SHORT_SKIPS, VEdge, View, VNode, _html, _legend,
                  _quote, _u_rank_lines, _u_rows, is_u_shaped, op_label, spatial_levels)

#: Arrow colours of the U figure, in order of first use (the paper's: blue convs, red
#: pooling, green up-convs, teal output conv; long skips keep their grey).
PALETTE = ("#1f4e9c", "#d62728", "#2ca02c", "#17a2b8", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def _drawn(data) -> bool:
    """A layer of the figure: an op the catalogue draws as its own box, not on a shortcut."""
    diagram = REGISTRY[data.op].diagram
    return diagram.kind in ("op", "input") and diagram.fold == "none" and not data.shortcut


def _representatives(graph: nx.DiGraph, keep) -> dict[int, int]:
    """Each graph node -> the drawn node whose tensor it carries on the main path
    (through folded ops and merges, along the data edge, not a skip)."""
    rep: dict[int, int] = {}
    for data in op_nodes(graph):
        if keep(data) or not data.inputs:
            rep[data.id] = data.id
            continue
        main = [u for u in data.inputs if op_edge(graph, u, data.id).kind == "data"] or list(data.inputs)
        rep[data.id] = rep[max(main)]
    return rep


def paper_dot(graph: nx.DiGraph, *, shapes: bool = True) -> str:
    """The DOT text of the paper figure for ``graph`` (a U for a U-Net, else a column)."""
    return _unet(graph) if is_u_shaped(graph) else _column(graph)


def _header(graph: nx.DiGraph, rankdir: str = "TB") -> list[str]:
    name = str(graph.graph.get("name", "network"))
    overrides = graph.graph.get("overrides", {})
    settings = "".join(f", {k}={v}" for k, v in overrides.items())
    return [f"digraph {_quote(name)} {{",
            f"  graph [{FONT}, rankdir={rankdir}, nodesep=0.25, ranksep=0.22, splines=spline, "
            f"labelloc=t, fontsize=16, label={_quote(name + settings + ' (paper style)')}];",
            f"  node [{FONT}, fontsize=11, margin=\"0.12,0.04\", height=0.28];",
            f"  edge [{FONT}, fontsize=9, arrowsize=0.6];"]


# ---- He et al. 2015, fig. 3 -----------------------------------------------------------------
def _column(graph: nx.DiGraph) -> str:
    """Layers in a column, a curved arc per residual unit on the right."""
    rep = _representatives(graph, _drawn)
    drawn = [data for data in op_nodes(graph) if _drawn(data)]
    lines = _header(graph)
    size = None
    for data in drawn:
        label = ("image" if len(data.shape) == 3 else "input") if not data.inputs else op_label(data)
        spatial = data.shape[1] if len(data.shape) >= 2 else 1
        if spatial != size:  # the paper's "output size: 56", left of the group's first layer
            size = spatial
            lines.append(f"  n{data.id}_size [label={_quote(f'output size: {spatial}')}, shape=plaintext, "
                         "fontsize=10, fontcolor=\"#444444\"];")
            lines.append(f"  {{rank=same; n{data.id}_size; n{data.id};}}")
            lines.append(f"  n{data.id}_size -> n{data.id} [style=invis, weight=0];")
        lines.append(f"  n{data.id} [label={_quote(label)}, shape=box, style=\"filled\", "
                     f"fillcolor=\"#ffffff\", width=2.2, group=main];")
    for data in drawn:
        for u in sorted({rep[u] for u in data.inputs}):
            lines.append(f"  n{u} -> n{data.id} [kind=\"data\", color=\"black\", weight=8];")
    for unit in residual_units(graph):
        if unit.shortcut == "none":
            continue
        kind = next((op_edge(graph, u, unit.merge).kind for u in op_node(graph, unit.merge).inputs
                     if op_edge(graph, u, unit.merge).kind in SHORT_SKIPS), "skip-identity")
        style = EDGE_STYLE[kind][0]
        # the arc leaves the unit's input and lands beside the unit's last layer, on the right
        lines.append(f"  n{rep[unit.input]} -> n{rep[unit.body_output]} [kind={_quote(kind)}, {style}, "
                     "tailport=e, headport=e, constraint=false];")
    lines += _legend(sorted({line.split('kind="')[1].split('"')[0] for line in lines
                             if 'kind="skip' in line}, key=list(EDGE_STYLE).index), title="")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- Ronneberger et al. 2015, fig. 1 --------------------------------------------------------
def _arrow_kind(graph: nx.DiGraph, node: int) -> str:
    """The legend entry of the op that makes feature map ``node``: its label without
    channel counts (``3x3 conv, 64`` -> ``3x3 conv``), with the ops folded after it
    (``3x3 conv, relu``)."""
    data = op_node(graph, node)
    parts = [p for p in op_label(data).split(", ") if not p.isdigit()]
    follower = node + 1
    while follower in graph and REGISTRY[op_node(graph, follower).op].diagram.fold == "label" \
            and op_node(graph, follower).inputs == (follower - 1,):
        parts.append(op_label(op_node(graph, follower)))
        follower += 1
    return ", ".join(parts)


def _map_label(data) -> str:
    """A feature map: its channel count over its spatial size (``64`` / ``570x570``)."""
    channels = str(data.shape[0]) if data.shape else ""
    size = format_dims(data.shape[1:]) if len(data.shape) > 1 else ""
    return (f'label=<<B>{_html(channels)}</B><BR/><FONT POINT-SIZE="9" COLOR="#444444">'
            f'{_html(size)}</FONT>>')


def _unet(graph: nx.DiGraph) -> str:
    def keep(data) -> bool:
        return _drawn(data) or REGISTRY[data.op].diagram.kind == "merge" and data.op != "residual_add"

    rep = _representatives(graph, keep)
    maps = [data for data in op_nodes(graph) if keep(data)]
    nodes = {f"n{d.id}": VNode(f"n{d.id}", "op", "", d.id, last=d.id) for d in maps}
    colours: dict[str, str] = {}
    edges: list[tuple[VEdge, str, str]] = []  # edge, its style, its legend text
    for data in maps:
        sources = {}
        for u in data.inputs:  # the kind is the graph edge's; the arrow leaves the map that holds u
            sources.setdefault(rep[u], op_edge(graph, u, data.id).kind)
        for u, kind in sorted(sources.items()):
            if kind in LONG_SKIPS:
                edges.append((VEdge(f"n{u}", f"n{data.id}", kind), EDGE_STYLE[kind][0], "copy and crop"
                              if op_node(graph, data.id).args.get("crop") == "center" else EDGE_STYLE[kind][1]))
                continue
            if REGISTRY[data.op].diagram.kind == "merge":  # the up-conv's half of the concatenated map
                edges.append((VEdge(f"n{u}", f"n{data.id}", "data"), 'color="#999999", style=dotted', ""))
                continue
            arrow = _arrow_kind(graph, data.id)
            colour = colours.setdefault(arrow, PALETTE[len(colours) % len(PALETTE)])
            edges.append((VEdge(f"n{u}", f"n{data.id}", "op"), f'color="{colour}", penwidth=2.2', arrow))
    view = View(nodes, [e for e, _, _ in edges], {}, {d.id: f"n{d.id}" for d in maps})
    levels = spatial_levels(graph)  # a map sits at its own resolution (the pooled map a row lower)
    rows = _u_rows(graph, view, sorted(nodes.values(), key=lambda n: n.order),
                   {f"n{d.id}": levels[d.id] for d in maps})
    lines = _header(graph)
    for data in maps:
        fill = "#ffffff" if REGISTRY[data.op].diagram.kind == "merge" else "#cfe2f3"
        label = f"label={_quote('input')}" if not data.inputs else _map_label(data)
        lines.append(f"  n{data.id} [{label}, shape=box, style=\"filled\", fillcolor=\"{fill}\"];")
    legend: dict[str, str] = {}
    for edge, style, text in edges:
        reverse = rows[edge.dst][0] < rows[edge.src][0]
        ends = f"n{edge.dst[1:]} -> n{edge.src[1:]}" if reverse else f"{edge.src} -> {edge.dst}"
        lines.append(f"  {ends} [kind={_quote(edge.kind)}, {style}, weight=0"
                     + (", dir=back" if reverse else "") + "];")
        if text:
            legend.setdefault(text, style)
    lines += _u_rank_lines(rows, sorted(nodes.values(), key=lambda n: n.order))
    lines += ["  subgraph cluster_legend {", '    label=""; style="rounded"; color="#aaaaaa";']
    for index, (text, style) in enumerate(legend.items()):
        lines.append(f"    legend_{index}_a [shape=point, width=0.05, label=\"\"];")
        lines.append(f"    legend_{index}_b [shape=plaintext, fontsize=10, label={_quote(text)}];")
        lines.append(f"    legend_{index}_a -> legend_{index}_b [legend=true, {style}];")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
