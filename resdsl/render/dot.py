"""Graph -> DOT text: the diagram people draw by hand in papers, from the spec's graph.

Pure and deterministic: no torch, no Graphviz, no dict-order or ``id()``
dependence. Everything is derived from ``net.graph`` (see :mod:`resdsl.graph`)
in node-creation order, so the same spec always gives the same bytes.

Three levels of detail:

- ``stage``: the stem's ops, each stage (or top-level block) as one box with its
  block count and a count of its skips, the head's ops;
- ``block``: each block that holds a residual (or a top-level block) as one box,
  its skip drawn around it into a ``+``; runs of identical blocks collapsed to
  ``bottleneck(128, 512) x 3`` unless ``expand``;
- ``layer``: every op, block instances as clusters.

Why one module of ~770 lines: it is one pipeline, graph -> view (which graph nodes
become which drawn node: ``_Builder``) -> DOT text (``emit``), whose two halves
share the view's types, the edge and node styles and the size caps; each half is a
section below (labels, the view, the U layout, text).

>>> import resdsl
>>> net = resdsl.loads('''
... network tiny:
...     input x: [8, 16, 16]
...     block unit(c: int):
...         residual:
...             conv1: conv 3x3, c
...             relu
...     a: unit(8)
...     b: unit(8)
... ''')
>>> text = to_dot(net.graph, level="block")
>>> 'label=<unit(8) x 2<BR/>' in text, 'each of 2' in text  # the run's one arc: a skip per block
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

from ..graph import Container, ResidualUnit, containers, gc_paused, op_edge, op_edges, op_node, op_nodes, residual_units
from ..ops import REGISTRY
from ..shapes import format_dims

LEVELS = ("stage", "block", "layer")
LAYOUTS = ("column", "u", "auto")
STYLES = ("default", "paper")  # paper: He et al.'s and Ronneberger et al.'s figures (render/paper.py)
SHORT_SKIPS = ("skip-identity", "skip-projection", "skip-zero-pad")
LONG_SKIPS = ("long-add", "long-mul", "long-concat")

# kind -> (DOT edge attributes, legend text). Projection and zero-pad are dashed and
# dotted, as in He et al. 2015 (fig. 3: "dotted shortcuts increase dimensions").
EDGE_STYLE: dict[str, tuple[str, str]] = {
    "data": ('color="black"', "data"),
    "skip-identity": ('color="#1f77b4", penwidth=1.6', "identity skip"),
    "skip-projection": ('color="#d95f02", penwidth=1.6, style=dashed', "projection skip (1x1 conv)"),
    "skip-zero-pad": ('color="#7b3294", penwidth=1.6, style=dotted', "zero-pad skip (option A)"),
    "long-add": ('color="#1b9e77", penwidth=2.2', "long skip, add"),
    "long-mul": ('color="#1b9e77", penwidth=2.2, style=dashed', "long skip, multiply"),
    "long-concat": ('color="#777777", penwidth=2.2', "long skip, concat (copy)"),
}
FONT = 'fontname="Helvetica"'


# How much a drawing may hold. Graphviz's layout time grows much faster than the
# drawing: on the development machine 750 ops in a column take 0.8 s, 1,500 take 4 s,
# and 1,000 ops whose long skips cross take minutes, because every edge spanning k
# ranks becomes k virtual nodes. The layout size is drawn nodes + virtual nodes; at
# MAX_LAYOUT_SIZE dot needs about 2 s. ResNet-152 at layer level is 908.
MAX_LAYOUT_SIZE = 2_000
MAX_DOT_NODES = 50_000  # .dot is not laid out: only the text's size and build time count


class RenderOptionError(ValueError):
    """An unknown level or layout (the CLI's choices make this a usage error)."""


class DrawingTooLarge(RenderOptionError):
    """The drawing is over :data:`MAX_LAYOUT_SIZE` (laid out) or :data:`MAX_DOT_NODES`."""


@dataclass
class VNode:
    """One drawn node: an op, a merge, a block box, a run of blocks or a stage."""

    key: str
    kind: str  # input | op | merge | shortcut | block | run | stage
    label: str
    order: int  # first graph node mapped here: gives the drawing order
    cluster: str = ""  # container path of its innermost cluster (layer level)
    tooltip: str = ""
    folded: list[str] = field(default_factory=list)  # labels of folded ops (Diagram.fold)
    last: int = -1  # last graph node mapped here: its tensor leaves the node
    plain: bool = False  # itself a foldable op (a norm, an activation): folded ops continue its line
    shape: tuple[int, ...] | None = None  # the tensor it outputs, written under its label
    side: bool = False  # on a gate's side branch (squeeze-excitation): off the straight main path
    fill: str = ""  # the op's own fill (Diagram.fill: attention on a transformer's stream)


@dataclass
class VEdge:
    src: str
    dst: str
    kind: str
    label: str = ""
    main: bool = False  # a long skip drawn as the main path (the tensor a gate multiplies)


@dataclass
class View:
    """The diagram before it is text: nodes, edges, clusters."""

    nodes: dict[str, VNode]
    edges: list[VEdge]
    clusters: dict[str, str]  # container path -> cluster title (layer level)
    node_of: dict[int, str]  # graph node -> drawn node key


@gc_paused()
def to_dot(graph: nx.DiGraph, *, level: str = "block", layout: str = "auto",
           shapes: bool = True, expand: bool = False, legend: bool = True,
           max_nodes: int | None = None, max_layout: int | None = None, style: str = "default") -> str:
    """The DOT text for ``graph`` (a ``net.graph``) at ``level``; byte-identical per spec.

    With ``max_nodes`` or ``max_layout`` (see :func:`layout_size`) a bigger drawing
    raises :class:`DrawingTooLarge` before any text is made.

    >>> import resdsl
    >>> net = resdsl.loads('network t:\\n    input x: [4]\\n    fc: linear 2\\n')
    >>> print(to_dot(net.graph, level="layer").splitlines()[0])
    digraph "t" {
    """
    if level not in LEVELS:
        raise RenderOptionError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    if layout not in LAYOUTS:
        raise RenderOptionError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if style not in STYLES:
        raise RenderOptionError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if style == "paper":  # one figure per paper: level, layout and expand do not apply
        level, expand = "layer", False
    if max_nodes is not None and level == "layer" and graph.number_of_nodes() > max_nodes:
        _too_large(graph, level, expand, f"{graph.number_of_nodes():,} nodes",
                   f"the {max_nodes:,} a .dot file may hold", False)
    view = build_view(graph, level=level, expand=expand)
    if max_nodes is not None and len(view.nodes) > max_nodes:
        _too_large(graph, level, expand, f"{len(view.nodes):,} nodes",
                   f"the {max_nodes:,} a .dot file may hold", False)
    if max_layout is not None and (size := layout_size(view)) > max_layout:
        _too_large(graph, level, expand, f"a layout size of {size:,} (drawn nodes plus the rows "
                   "its edges span)", f"the {max_layout:,} Graphviz lays out in seconds", True)
    if style == "paper":
        from .paper import paper_dot

        return paper_dot(graph, shapes=shapes)
    return view_dot(graph, view, level=level, layout=layout, shapes=shapes, legend=legend)


def view_dot(graph: nx.DiGraph, view: "View", *, level: str = "block", layout: str = "auto",
             shapes: bool = True, legend: bool = True) -> str:
    """The DOT text of a view made by :func:`build_view`: the layout chosen (``auto``:
    a U for a U-Net, unless too large), then :func:`emit`."""
    if layout == "auto":
        layout = "u" if is_u_shaped(graph) else "column"
    if layout == "u" and _u_cells(graph, view) > MAX_U_CELLS:
        layout = "column"  # a U that large is no picture of a U
    return emit(graph, view, layout=layout, shapes=shapes, legend=legend, level=level)


def layout_size(view: "View") -> int:
    """Drawn nodes plus the virtual nodes Graphviz adds: an edge from row r to row
    r + k (rows by longest path in drawing order) costs k - 1. Linear in the view."""
    order = {key: vnode.order for key, vnode in view.nodes.items()}
    outgoing: dict[str, list[str]] = {}
    for edge in view.edges:
        outgoing.setdefault(edge.src, []).append(edge.dst)
    row = dict.fromkeys(view.nodes, 0)
    for key in sorted(view.nodes, key=order.__getitem__):
        for dst in outgoing.get(key, ()):
            if order[dst] > order[key]:
                row[dst] = max(row[dst], row[key] + 1)
    return len(view.nodes) + sum(max(0, abs(row[e.dst] - row[e.src]) - 1) for e in view.edges)


def _too_large(graph: nx.DiGraph, level: str, expand: bool, what: str, over: str,
               laid_out: bool) -> None:
    coarser = {"layer": "--level block", "block": "--level stage"}.get(level)
    if level == "block" and expand:
        coarser = "--level block without --expand"
    hints = [f"draw less with {coarser}"] if coarser else []
    if laid_out:
        hints.append(f"write a .dot file (not laid out; up to {MAX_DOT_NODES:,} nodes)")
    name = graph.graph.get("name", "network")
    raise DrawingTooLarge(f"the {level}-level drawing of '{name}' has {what}, over {over}; "
                          + (" or ".join(hints) or "no coarser level exists"))


# ---- which graph nodes become which drawn node ----------------------------------------
def _prefixes(path: str) -> Iterable[str]:
    """``layer2.0.conv1`` -> ``layer2``, ``layer2.0``, ``layer2.0.conv1``."""
    parts = path.split(".") if path else []
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _direct_units(graph: nx.DiGraph) -> dict[str, list[ResidualUnit]]:
    """Residual units by the block that holds them (a labelled residual counts for its block)."""
    boxes = containers(graph)
    held: dict[str, list[ResidualUnit]] = {}
    for unit in residual_units(graph):
        path = unit.container
        while path and boxes[path].kind == "residual":
            path = path.rpartition(".")[0]
        held.setdefault(path, []).append(unit)
    return held


def _box_paths(graph: nx.DiGraph, level: str) -> set[str]:
    """Containers drawn as one box: at ``stage`` level the outermost stages and blocks;
    at ``block`` level the blocks with no stage and no residual-holding block inside."""
    boxes = containers(graph)
    if level == "stage":
        kinds = ("stage", "block")
        return {p for p, c in boxes.items() if c.kind in kinds and not any(
            boxes[q].kind in kinds for q in _prefixes(p) if q != p)}
    held = _direct_units(graph)
    composite: set[str] = set()  # expanded: they hold a stage or a residual-holding block
    for path, box in boxes.items():
        if box.kind == "stage" or (box.kind == "block" and path in held):
            composite.update(q for q in _prefixes(path) if q != path)
    return {p for p, c in boxes.items() if c.kind == "block" and p not in composite and all(
        q in composite or boxes[q].kind not in ("block", "stage") for q in _prefixes(p) if q != p)}


def _group_of(container: str, box_paths: set[str]) -> str | None:
    for prefix in _prefixes(container):
        if prefix in box_paths:
            return prefix
    return None


# ---- labels ---------------------------------------------------------------------------
def op_label(data: dict) -> str:
    """The op's paper-style text: ``3x3 conv, 128, /2``, ``fc 1000``, ``avg pool``."""
    in_shape = data.in_shapes[0] if data.in_shapes else data.shape
    text = REGISTRY[data.op].label(data.args, in_shape, data.shape)
    return text or data.op


def _drawn_kind(data: dict) -> str:
    """The drawn node's kind from the op's ``diagram``: an op box on a shortcut is a shortcut box."""
    kind = REGISTRY[data.op].diagram.kind
    return "shortcut" if kind == "op" and data.shortcut else kind


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return format_dims(value)
    return str(value)


def _structures(graph: nx.DiGraph) -> dict[str, tuple]:
    """Per block container, what its drawing depends on: each op with its shapes, its
    shortcut flag and its non-float arguments, and its residuals' shortcut kinds. Floats
    (drop-path rates, init values, eps) change no box, so blocks that differ only there
    (ConvNeXt's growing drop-path rate) still collapse into one run."""
    boxes = containers(graph)
    ops: dict[str, list] = {}
    for data in op_nodes(graph):
        item = (data.op, tuple((k, repr(v)) for k, v in data.args.items() if not isinstance(v, float)),
                data.in_shapes, data.shape, data.shortcut)
        for prefix in _prefixes(data.container):
            if boxes[prefix].kind == "block":
                ops.setdefault(prefix, []).append(item)
    kinds: dict[str, list[str]] = {}
    for unit in residual_units(graph):
        for prefix in _prefixes(unit.container):
            kinds.setdefault(prefix, []).append(unit.shortcut)
    return {path: (boxes[path].block, tuple(items), tuple(kinds.get(path, ())))
            for path, items in ops.items()}


def _keyword_args(box: Container) -> set[str]:
    """The arguments the spec names at the block's use (``groups=32``): the author
    thought them defining, so the box shows them even when they never vary."""
    args = getattr(box.stmt, "args", ()) or ()
    return {arg.name for arg in args if getattr(arg, "name", None)}


def _varying_args(graph: nx.DiGraph, structures: dict[str, tuple] | None = None) -> dict[str, list[str]]:
    """Per block definition, the arguments a box shows: those whose value differs
    between structurally different instances, and those named at the use
    (``groups=32``); all of them when none varies and none is named.

    An argument that differs between instances of one structure (a drop-path rate)
    changes nothing drawn and is left out; ``stride`` is shown as ``/2`` from the shapes.
    """
    structures = _structures(graph) if structures is None else structures
    seen: dict[str, dict[str, set]] = {}
    within: dict[tuple, dict[str, set]] = {}  # (block, structure) -> argument values
    order: dict[str, list[str]] = {}
    named: dict[str, set[str]] = {}
    for box in containers(graph).values():
        if box.kind != "block" or box.block is None:
            continue
        values = seen.setdefault(box.block, {})
        same = within.setdefault((box.block, structures.get(box.path)), {})
        order.setdefault(box.block, list(box.args))
        named.setdefault(box.block, set()).update(_keyword_args(box))
        for name, value in box.args.items():
            values.setdefault(name, set()).add(repr(value))
            same.setdefault(name, set()).add(repr(value))
    cosmetic = {(block, name) for (block, _), values in within.items()
                for name, found in values.items() if len(found) > 1}
    shown = {}
    for block in sorted(seen):
        names = [n for n in order[block] if n != "stride" and (block, n) not in cosmetic]
        varying = [n for n in names if len(seen[block][n]) > 1 or n in named[block]]
        shown[block] = varying or names  # a block used one way: all its arguments
    return shown


def _downsampling(graph: nx.DiGraph, first: int, last: int) -> str:
    """``, /2`` when the spatial size shrinks by an integer factor from ``first`` to ``last``."""
    before, after = op_node(graph, first).shape, op_node(graph, last).shape
    if len(before) < 2 or len(after) != len(before) or after[1] == 0 or before[1] <= after[1]:
        return ""
    factor = before[1] / after[1]
    return f", /{round(factor)}" if factor >= 1.5 else ""


def _block_text(box: Container, varying: dict[str, list[str]]) -> str:
    names = varying.get(box.block or "", [])
    named = _keyword_args(box)
    args = ", ".join(f"{n}={_value(box.args[n])}" if n in named or isinstance(box.args[n], bool)
                     else _value(box.args[n]) for n in names)
    return f"{box.block}({args})" if args else f"{box.block or box.path}"


def _skip_summary(units: list[ResidualUnit]) -> str:
    counts: dict[str, int] = {}
    for unit in units:
        counts[unit.shortcut] = counts.get(unit.shortcut, 0) + 1
    words = {"identity": "identity", "projection": "projection", "zero-pad": "zero-pad",
             "explicit": "projection", "none": "no"}
    merged: dict[str, int] = {}
    for kind in ("projection", "explicit", "zero-pad", "identity", "none"):
        if kind in counts:
            merged[words[kind]] = merged.get(words[kind], 0) + counts[kind]
    parts = [f"{n} {w}" for w, n in merged.items()]
    total = sum(merged.values())
    return f"{' + '.join(parts)} skip{'s' if total != 1 else ''}" if parts else ""


# ---- the view -------------------------------------------------------------------------
class _Builder:
    def __init__(self, graph: nx.DiGraph, level: str, expand: bool, boxes: frozenset[str] | None = None,
                 summarised: frozenset[str] = frozenset(), expanded: frozenset[str] = frozenset()):
        self.graph = graph
        self.level = level
        self.expand = expand
        self.box_override = boxes  # the containers drawn as boxes, when not the level's (the page)
        self.summarised = summarised  # boxes written as stage boxes: path, count and skips
        self.expanded = expanded  # containers whose loose ops are framed (a page's opened box)
        self.boxes = containers(graph)
        self.held = _direct_units(graph)
        self.structures = _structures(graph)
        self.varying = _varying_args(graph, self.structures)
        self.nodes: dict[str, VNode] = {}
        self.node_of: dict[int, str] = {}
        self.edges: list[VEdge] = []
        self.edge_seen: set[tuple[str, str, str]] = set()
        self.lifted_targets: set[int] = set()  # merges whose skip is drawn around a box
        self.lifted_runs: list[tuple[list[str], list[ResidualUnit]]] = []
        self.units_under: dict[str, list[ResidualUnit]] = {}  # container -> units inside it
        for unit in residual_units(graph):
            for prefix in _prefixes(unit.container):
                self.units_under.setdefault(prefix, []).append(unit)

    def add(self, key: str, kind: str, label: str, node: int, cluster: str = "",
            tooltip: str = "") -> VNode:
        if key not in self.nodes:
            self.nodes[key] = VNode(key, kind, label, node, cluster, tooltip)
        vnode = self.nodes[key]
        self.node_of[node] = key
        vnode.last = max(vnode.last, node)
        return vnode

    def edge(self, src: str, dst: str, kind: str, label: str = "") -> None:
        if src == dst or (src, dst, kind) in self.edge_seen:
            return
        self.edge_seen.add((src, dst, kind))
        self.edges.append(VEdge(src, dst, kind, label))

    def build(self) -> View:
        if self.level == "layer":
            self._assign_layer()
        else:
            self._assign_grouped()
        self._contract_edges()
        self._shapes()
        self._gates()
        clusters = self._clusters() if self.level != "stage" else {}
        return View(self.nodes, self.edges, clusters, self.node_of)

    def _gates(self) -> None:
        """A gate that multiplies the main tensor by a smaller one computed from it
        (squeeze-excitation: pool, fc, fc, sigmoid, then x * gate) is a side branch: its
        ops leave the straight main path, and the main tensor's edge into the multiply
        becomes that path."""
        for edge in self.edges:
            if edge.kind != "long-mul":
                continue
            merge = op_node(self.graph, self.nodes[edge.dst].order)
            if len(merge.in_shapes) != 2 or math.prod(merge.in_shapes[0]) >= math.prod(merge.shape):
                continue
            edge.main = True
            source, target = self.nodes[edge.src], self.nodes[edge.dst]
            for vnode in self.nodes.values():
                if source.last < vnode.order < target.order:
                    vnode.side = True

    def _shapes(self) -> None:
        """Each box writes the shape of the tensor it outputs (at layer level only where
        the op changed it), so no shape sits on an edge where a skip could strike it."""
        for vnode in self.nodes.values():
            first, data = op_node(self.graph, vnode.order), op_node(self.graph, vnode.last)
            if vnode.kind == "input" or (vnode.kind == "merge" and (not vnode.folded and len(vnode.label) == 1
                                                                    or first.in_shapes[0] == first.shape)):
                continue  # a '+' circle holds no text; its tensor's shape is on the box before it
            if self.level == "layer" and data.in_shapes and data.in_shapes[0] == data.shape:
                continue
            if len(data.shape) == 1 and str(data.shape[0]) in vnode.label.replace(",", " ").split():
                continue  # "fc 1000" says it already
            vnode.shape = data.shape

    # layer: one drawn node per op
    def _assign_layer(self) -> None:
        cluster_paths = self._cluster_paths()
        padded = {n for u in residual_units(self.graph) if u.shortcut == "zero-pad"
                  for n in range(u.input + 1, u.merge)}
        for data in op_nodes(self.graph):
            node = data.id
            kind = _drawn_kind(data)
            if kind == "shortcut" and node in padded:
                kind = "zero-pad"  # option A has no weights: drawn in its skip's style, not a projection's
            cluster = ""
            for prefix in _prefixes(data.container):
                if prefix in cluster_paths:
                    cluster = prefix
            vnode = self.add(f"n{node}", kind, self._node_text(data, kind), node, cluster,
                             data.module or "input")
            vnode.fill = REGISTRY[data.op].diagram.fill if kind == "op" else ""

    def _cluster_paths(self) -> set[str]:
        """Block instances (the ones a block level draws as boxes, and what encloses them)."""
        paths = _box_paths(self.graph, "block")
        enclosing = {q for p in paths for q in _prefixes(p) if q != p}
        return {p for p in paths | enclosing if self.boxes[p].kind in ("block", "stage", "residual")}

    def _clusters(self) -> dict[str, str]:
        used: set[str] = set()
        for vnode in self.nodes.values():
            used.update(_prefixes(vnode.cluster))
        titles = {}
        framed = ("block", "stage", "residual") if self.level == "layer" else ("block", "stage")
        for path in sorted(used):
            box = self.boxes.get(path)
            if box is None or box.kind not in framed:
                continue  # a sequential is no frame: the ops between its stages lie outside them
            if box.kind == "stage":
                titles[path] = f"{path}: {box.block} x {len(box.children)}"
            elif box.kind == "block":
                titles[path] = f"{path}: {_block_text(box, self.varying)}" + \
                    _downsampling(self.graph, box.input, box.output)
            else:
                titles[path] = path
        return titles

    def _node_text(self, data: dict, kind: str) -> str:
        if kind == "input":
            return f"input {format_dims(data.shape)}"
        return op_label(data)

    # stage and block: boxes, runs, lifted skips, folded activations
    def _assign_grouped(self) -> None:
        box_paths = _box_paths(self.graph, self.level) if self.box_override is None else set(self.box_override)
        runs = self._runs(box_paths)
        lifted = self._lift(runs) if self.level == "block" else {}
        for data in op_nodes(self.graph):
            node = data.id
            group = _group_of(data.container, box_paths)
            if group is not None:
                self._assign_boxed(node, data, runs[group], lifted.get(runs[group][0]))
            else:
                self._assign_loose(node, data)

    def _assign_loose(self, node: int, data: dict) -> None:
        kind = _drawn_kind(data)
        if kind == "input":
            self.add(f"n{node}", "input", f"input {format_dims(data.shape)}", node, tooltip="input")
            return
        fold = REGISTRY[data.op].diagram.fold  # drawn inside the node before it?
        source = self.node_of.get(data.inputs[0]) if data.inputs else None
        if (fold != "none" and source is not None and self.nodes[source].kind == "op"
                and self.graph.out_degree(data.inputs[0]) == 1):
            vnode = self.add(source, "op", "", node)
            if fold == "label":
                vnode.folded.append(op_label(data))
            return
        vnode = self.add(f"n{node}", kind, op_label(data), node, _group_of(data.container, self.expanded) or "",
                         tooltip=data.module or "")
        vnode.plain = fold != "none"
        vnode.fill = REGISTRY[data.op].diagram.fill if kind == "op" else ""

    def _assign_boxed(self, node: int, data: dict, run: list[str], lift: ResidualUnit | None) -> None:
        key = _node_id(run[0])
        cluster = self._enclosing(run[0])
        if lift is not None and (data.shortcut and self._container_in(data, run[-1])
                                 or data.shortcut and self._container_in(data, run[0])):
            return  # drawn as the label of the skip around the box
        if lift is not None and node >= lift.merge and self._container_in(data, run[-1]):
            vnode = self.add(key + "__plus", "merge", op_label(op_node(self.graph, lift.merge)), node,
                             cluster, tooltip=op_node(self.graph, lift.merge).module or "")
            if node > lift.merge and REGISTRY[data.op].diagram.fold != "silent":
                vnode.folded.append(op_label(data))  # the activation after the add: "+, relu"
                vnode.plain = True
            return
        if key in self.nodes:  # the label scans the run's children and units: build it once
            self.add(key, "", "", node)
            return
        self.add(key, "run" if len(run) > 1 else ("stage" if self.boxes[run[0]].kind == "stage"
                                                  or self.level == "stage" or run[0] in self.summarised
                                                  else "block"),
                 self._box_text(run), node, cluster, tooltip=self._run_path(run))

    def _enclosing(self, path: str) -> str:
        """The innermost stage or block around ``path``: its cluster at block level."""
        if self.level != "block":
            return ""
        inner = ""
        for prefix in _prefixes(path):
            if prefix != path and self.boxes[prefix].kind in ("stage", "block"):
                inner = prefix
        return inner

    def _container_in(self, data: dict, path: str) -> bool:
        container = data.container
        return container == path or container.startswith(path + ".")

    def _run_path(self, run: list[str]) -> str:
        if len(run) == 1:
            return run[0]
        head, _, first = run[0].rpartition(".")
        last = run[-1].rpartition(".")[2]
        return f"{head}.{first}-{last}" if head else f"{first}-{last}"

    def _box_text(self, run: list[str]) -> str:
        first, last = self.boxes[run[0]], self.boxes[run[-1]]
        down = _downsampling(self.graph, first.input, last.output)
        if first.kind == "stage":
            blocks = [self.boxes[c] for c in first.children if c in self.boxes]
            inner = blocks[-1] if blocks else first
            text = f"{_block_text(inner, self.varying) if blocks else first.block} x {len(first.children)}{down}"
        else:
            text = _block_text(first, self.varying) + (f" x {len(run)}" if len(run) > 1 else down)
        if self.level == "stage" or first.path in self.summarised:
            summary = _skip_summary(self.units_under.get(first.path, []))
            return "\n".join(t for t in (f"{first.path}: {text}", summary) if t)
        return text

    def _signature(self, path: str) -> tuple:
        box = self.boxes[path]
        return (box.block, self.structures.get(path), op_node(self.graph, box.input).shape,
                op_node(self.graph, box.output).shape)

    def _runs(self, box_paths: set[str]) -> dict[str, list[str]]:
        """Each box path -> the run of identical, chained sibling blocks it belongs to."""
        runs: dict[str, list[str]] = {}
        ordered = sorted(box_paths, key=lambda p: (self.boxes[p].input, self.boxes[p].output, p))
        current: list[str] = []
        for path in ordered:
            if current and self._extends(current, path):
                current.append(path)
            else:
                current = [path]
            runs[path] = current
        return runs  # members share their run's list (a copy each was quadratic in the run)

    def _extends(self, run: list[str], path: str) -> bool:
        if self.expand or self.level != "block":
            return False
        prev = self.boxes[run[-1]]
        box = self.boxes[path]
        return (box.kind == "block" and prev.output == box.input and path not in self.summarised
                and run[0] not in self.summarised
                and prev.path.rpartition(".")[0] == path.rpartition(".")[0]
                and self._signature(run[0]) == self._signature(path))

    def _lift(self, runs: dict[str, list[str]]) -> dict[str, ResidualUnit]:
        """Runs whose blocks are one residual from input to output: skip drawn around the box."""
        lifted: dict[str, ResidualUnit] = {}
        for first, run in runs.items():
            if run[0] != first:
                continue
            units = [self._boundary_unit(path) for path in run]
            if all(u is not None for u in units):
                lifted[first] = units[-1]
                for unit in units:
                    self.lifted_targets.add(unit.merge)
                self.lifted_runs.append((run, units))
        return lifted

    def _boundary_unit(self, path: str) -> ResidualUnit | None:
        box = self.boxes[path]
        units = self.held.get(path, [])
        if len(units) != 1 or units[0].input != box.input or units[0].shortcut == "none":
            return None
        return units[0]

    # edges: contract the graph's edges onto the drawn nodes
    def _contract_edges(self) -> None:
        lift_edges = {}
        for run, units in self.lifted_runs:
            lift_edges[units[-1].merge] = (run, units[0])
        for u, v, edge in op_edges(self.graph):
            kind = edge.kind
            if kind in SHORT_SKIPS and (v in self.lifted_targets or self._into_shortcut_of_lifted(v)):
                continue
            if u not in self.node_of or v not in self.node_of:
                continue
            src, dst = self.node_of[u], self.node_of[v]
            if kind in SHORT_SKIPS and self.nodes[dst].kind in ("block", "run", "stage"):
                continue  # a residual inside a box
            label = ""
            if kind == "long-concat" and op_node(self.graph, v).args.get("crop") == "center" \
                    and edge.shape[1:] != op_node(self.graph, v).shape[1:]:
                label = "copy and crop"
            self.edge(src, dst, kind, label)
            if v in lift_edges:
                self._lifted_edge(*lift_edges[v])

    def _into_shortcut_of_lifted(self, node: int) -> bool:
        return node not in self.node_of and op_node(self.graph, node).shortcut

    def _lifted_edge(self, run: list[str], first_unit: ResidualUnit) -> None:
        box = self.boxes[run[0]]
        plus = _node_id(run[0]) + "__plus"
        source = self.node_of[box.input]
        shortcut = [n for n in self.graph.predecessors(first_unit.merge)
                    if op_edge(self.graph, n, first_unit.merge).kind in SHORT_SKIPS]
        kind = op_edge(self.graph, shortcut[0], first_unit.merge).kind if shortcut else "skip-identity"
        label = self._shortcut_text(first_unit)
        if len(run) > 1:  # one arc stands for the skip of each block in the stacked box
            label = "\n".join(t for t in (label, f"each of {len(run)}") if t)
        self.edge(source, plus, kind, label)

    def _shortcut_text(self, unit: ResidualUnit) -> str:
        """The ops on a shortcut path, ``1x1 conv, 512, /2 + batch norm``; empty for identity.
        Boxes are named one by one; a norm or activation after them is added with ``+``."""
        boxes, annotations = [], []
        for node in range(unit.input + 1, unit.merge):
            data = op_node(self.graph, node)
            if not data.shortcut or REGISTRY[data.op].diagram.fold == "silent":
                continue
            (boxes if REGISTRY[data.op].diagram.on_skip else annotations).append(op_label(data))
        return " + ".join(t for t in (", ".join(boxes), ", ".join(annotations)) if t)


def build_view(graph: nx.DiGraph, *, level: str = "block", expand: bool = False,
               boxes: Iterable[str] | None = None, summarised: Iterable[str] = (),
               expanded: Iterable[str] = ()) -> View:
    """Map graph nodes to drawn nodes and contract edges (see :func:`to_dot`).

    The interactive page draws mixed levels: ``boxes`` (block level) names the
    containers drawn as one box each, instead of the level's own; those in
    ``summarised`` are written as stage boxes; the ops of those in ``expanded``
    that no box holds are framed together."""
    return _Builder(graph, level, expand, None if boxes is None else frozenset(boxes),
                    frozenset(summarised), frozenset(expanded)).build()


# ---- U layout -------------------------------------------------------------------------
def spatial_levels(graph: nx.DiGraph) -> dict[int, int]:
    """Resolution level of each graph node: +1 per halving of the spatial size, -1 per doubling."""
    levels: dict[int, int] = {}
    for data in op_nodes(graph):
        node = data.id
        if not data.inputs:
            levels[node] = 0
            continue
        before, after = data.in_shapes[0], data.shape
        step = 0
        if len(before) >= 2 and len(after) == len(before) and before[1] > 0 and after[1] > 0:
            ratio = before[1] / after[1]
            if ratio >= 1.5:
                step = round(math.log2(ratio))
            elif ratio <= 1 / 1.5:
                step = -round(math.log2(1 / ratio))
        levels[node] = levels[data.inputs[0]] + step
    return levels


def is_u_shaped(graph: nx.DiGraph) -> bool:
    """True when a long skip joins an encoder to a decoder at the same resolution: some
    op between its ends lowers the resolution and a later one raises it again (a U-Net).
    A squeeze-excitation gate (pool to 1x1, broadcast back by the multiply itself) has
    no op that raises it, so it is no U."""
    longs = [(u, v) for u, v, edge in op_edges(graph) if edge.kind in LONG_SKIPS]
    if not longs:
        return False
    levels = spatial_levels(graph)
    # Per node, the last op up to it that lowered / raised the resolution: each long
    # skip is answered in O(1) (a scan per skip was quadratic).
    last_down: dict[int, int] = {}
    last_up: dict[int, int] = {}
    down = up = -1
    for node in sorted(graph.nodes):
        inputs = op_node(graph, node).inputs
        if inputs and levels[inputs[0]] < levels[node]:
            down = node
        if inputs and levels[inputs[0]] > levels[node]:
            up = node
        last_down[node], last_up[node] = down, up
    # an up-step strictly inside (u, v) whose input came after a down-step inside (u, v)
    return any(levels[v] == levels[u] and u < last_up[v - 1] and u < last_down[last_up[v - 1] - 1]
               for u, v in longs if v - 1 in last_up and last_up[v - 1] - 1 in last_down)


# ---- text -----------------------------------------------------------------------------
#: Longest label line and most label lines drawn: names come from the spec, and Graphviz
#: lays out (and rasterises) whatever it is given: a 13,000-character network name made a
#: 32,767 x 15,842 pixel PNG (2 GB, 14 s).
MAX_LABEL_CHARS, MAX_LABEL_LINES = 100, 12


def _shorten(text: str) -> str:
    lines = text.split("\n")
    if len(lines) > MAX_LABEL_LINES:
        lines = lines[:MAX_LABEL_LINES - 1] + [f"... {len(lines) - MAX_LABEL_LINES + 1} more lines"]
    return "\n".join(line if len(line) <= MAX_LABEL_CHARS else line[:MAX_LABEL_CHARS - 3] + "..."
                     for line in lines)


def _quote(text: str) -> str:
    text = _shorten(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


NODE_STYLE = {
    "input": 'shape=box, style="rounded,filled", fillcolor="#eeeeee"',
    "op": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "shortcut": 'shape=box, style="rounded,filled,dashed", fillcolor="#fde0c5", color="#d95f02"',
    "zero-pad": 'shape=box, style="rounded,filled,dotted", fillcolor="#ecdff0", color="#7b3294"',
    "merge": 'shape=circle, width=0.32, fixedsize=true, style=filled, fillcolor="#ffffff"',
    "block": 'shape=box, style="filled", fillcolor="#e8f0fa"',
    "run": 'shape=box3d, style="filled", fillcolor="#d4e3f5"',
    "stage": 'shape=box, style="filled,bold", fillcolor="#d4e3f5"',
}


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _label(text: str, shape: tuple[int, ...] | None) -> str:
    """``label="..."``, or with a shape an HTML label: the text, then the shape smaller and grey."""
    if shape is None:
        return f"label={_quote(text)}"
    lines = "<BR/>".join(_html(line) for line in _shorten(text).split("\n"))
    return (f'label=<{lines}<BR/><FONT POINT-SIZE="9" COLOR="#555555">'
            f'{_html(_shorten(format_dims(shape)))}</FONT>>')


def _node_line(vnode: VNode, shapes: bool = True) -> str:
    label = vnode.label
    if vnode.folded:
        label += (", " if vnode.plain else "\n") + ", ".join(vnode.folded)
    if vnode.kind == "merge" and len(label) > 1:  # concat: a small box, not a circle
        style = 'shape=box, style="rounded,filled", fillcolor="#f2f2f2", height=0.3'
    else:
        style = NODE_STYLE[vnode.kind]
    if vnode.fill:
        style = style.replace('fillcolor="#ffffff"', f'fillcolor="{vnode.fill}"')
    attrs = f"{_label(label, vnode.shape if shapes else None)}, {style}"
    if vnode.tooltip:
        attrs += f", tooltip={_quote(vnode.tooltip)}"
    return f"{vnode.key} [{attrs}];"


def _edge_line(edge: VEdge, reverse: bool, extra: str = "") -> str:
    style, _ = EDGE_STYLE["data" if edge.main else edge.kind]  # a gated tensor is the main path
    parts = [f"kind={_quote(edge.kind)}", style]
    if edge.label:  # dot puts a label's box against its curve: two spaces keep the text off it
        text = "\n".join("  " + line for line in edge.label.split("\n"))
        parts.append(f"label={_quote(text)}, fontsize=9, fontcolor=\"#555555\"")
    if edge.kind == "data" or edge.main:
        parts.append("weight=8")
    else:
        parts.append("weight=0")
    if extra:
        parts.append(extra)
    if reverse:
        return f"{edge.dst} -> {edge.src} [{', '.join(parts)}, dir=back];"
    return f"{edge.src} -> {edge.dst} [{', '.join(parts)}];"


def emit(graph: nx.DiGraph, view: View, *, layout: str, shapes: bool, legend: bool,
         level: str) -> str:
    """Write ``view`` as DOT text: header, clusters with nodes, edges, rank rows, legend."""
    name = str(graph.graph.get("name", "network"))
    lines = [f"digraph {_quote(name)} {{",
             f"  graph [{FONT}, rankdir=TB, nodesep=0.3, ranksep=0.3, splines=spline, "
             f"labelloc=t, fontsize=16, label={_quote(title(graph, level))}];",
             f"  node [{FONT}, fontsize=11, margin=\"0.12,0.06\", height=0.3];",
             f"  edge [{FONT}, fontsize=9, arrowsize=0.6];"]
    ordered = sorted(view.nodes.values(), key=lambda n: n.order)
    # a U pins every node's row: frames around nodes of pinned rows break dot's ranking
    lines += _emit_nodes(ordered, view.clusters if layout != "u" else {}, layout, shapes)
    rows = _u_rows(graph, view, ordered) if layout == "u" else {}
    # column: the main path is one group, so dot keeps it straight and routes skips beside
    # it. U: every node's row is fixed (see _u_rows), so no edge may move a node.
    for edge in view.edges:  # in a U an edge up (an up-conv into its concat) is written reversed
        reverse = bool(rows) and rows[edge.dst][0] < rows[edge.src][0]
        if rows and edge.label == "copy and crop":  # said by the legend: dot strikes a flat edge's label
            edge = VEdge(edge.src, edge.dst, edge.kind, "", edge.main)
        lines.append("  " + _edge_line(edge, reverse))
    if rows:
        lines += _u_rank_lines(rows, ordered)
    if legend:
        cropped = any(e.label == "copy and crop" for e in view.edges)
        lines += _legend(sorted({e.kind for e in view.edges if not e.main} - {"data"},
                                key=list(EDGE_STYLE).index), cropped)
    lines.append("}")
    return "\n".join(lines) + "\n"


def title(graph: nx.DiGraph, level: str) -> str:
    """``cifar_resnet, n=18 (block level)``: the name and every parameter the caller set,
    so two depths of one spec never share a title."""
    name = str(graph.graph.get("name", "network"))
    overrides = graph.graph.get("overrides", {})
    settings = ", ".join(f"{key}={_value(value)}" for key, value in overrides.items())
    return f"{name}{', ' + settings if settings else ''} ({level} level)"


def _emit_nodes(ordered: list[VNode], clusters: dict[str, str], layout: str,
                shapes: bool = True) -> list[str]:
    """Nodes inside nested clusters. In a column a frame's title is a text node beside
    its first node (on its left): a title on the frame's top edge is struck by the
    edge that enters the frame."""
    group = "" if layout == "u" else ", group=main"
    by_cluster: dict[str, list[VNode]] = {}
    for vnode in ordered:
        by_cluster.setdefault(vnode.cluster if clusters else "", []).append(vnode)
    first: dict[str, int] = {}  # cluster -> first node inside it, nested clusters included
    for vnode in ordered:
        for prefix in _prefixes(vnode.cluster):
            first.setdefault(prefix, vnode.order)
    children: dict[str, list[str]] = {}
    for path in sorted(clusters, key=lambda p: (first.get(p, 0), p)):
        parent = ""
        for prefix in _prefixes(path):
            if prefix != path and prefix in clusters:
                parent = prefix
        children.setdefault(parent, []).append(path)
    lines: list[str] = []
    index = [0]

    def write(path: str, depth: int, titles: list[str]) -> None:
        pad = "  " * depth
        direct = by_cluster.get(path, [])
        if titles and direct and direct[0].order == first.get(path):
            title = f"{direct[0].key}__title"  # beside the frame's first node, on its left
            lines.append(f"{pad}{title} [label={_quote(chr(10).join(titles))}, shape=plaintext, "
                         "fontsize=10, fontcolor=\"#444444\", margin=\"0.04,0.02\"];")
            lines.append(f"{pad}{{rank=same; {title}; {direct[0].key};}}")
            lines.append(f"{pad}{title} -> {direct[0].key} [style=invis, weight=0];")
            titles = []
        for vnode in direct:
            line = _node_line(vnode, shapes)
            if vnode.kind not in ("shortcut", "zero-pad") and not vnode.side and group:
                line = line[:-2] + group + "];"
            lines.append(pad + line)
        for child in children.get(path, []):
            index[0] += 1
            lines.append(f"{pad}subgraph cluster_{index[0]} {{")
            inherited = titles if first.get(child) == first.get(path) else []
            if group:  # the title goes beside the first node (of this or of a nested frame)
                lines.append(f"{pad}  label=\"\"; style=\"rounded\"; color=\"#aaaaaa\";")
                write(child, depth + 1, inherited + [clusters[child]])
            else:
                lines.append(f"{pad}  label={_quote(clusters[child])}; labeljust=l; fontsize=10; "
                             f"style=\"rounded\"; color=\"#aaaaaa\";")
                write(child, depth + 1, [])
            if inherited:
                titles = []
            lines.append(pad + "}")

    write("", 1, [])
    return lines


def _node_levels(graph: nx.DiGraph, view: View) -> dict[str, int]:
    """Resolution of the tensor entering each drawn node: a pooling belongs to the
    resolution it reads, an up-conv to the one it reads (below the row it feeds)."""
    levels = spatial_levels(graph)
    rows = {}
    for key, vnode in view.nodes.items():
        inputs = op_node(graph, vnode.order).inputs
        rows[key] = levels[inputs[0]] if inputs else levels[vnode.order]
    return rows


#: Boxes are about this many times wider than a row of the grid is tall (text and gaps):
#: what a U's cells come to in inches, to choose how long a column may grow.
_CELL_ASPECT = 2.6
#: The aspect a U aims at (width over height), inside the 1:1 to 2.5:1 of a paper's figure.
_U_ASPECT = 1.7


def _u_rows(graph: nx.DiGraph, view: View, ordered: list[VNode],
            levels: dict[str, int] | None = None) -> dict[str, tuple[int, int]]:
    """The U's grid (see :func:`_u_grid`), each segment folded into as many side-by-side
    columns as bring the drawing nearest a paper's aspect: at layer level a resolution's
    ops would otherwise make one column far taller than the U is wide."""
    best, best_gap = None, None
    longest = _u_grid(graph, view, ordered, levels, 0)
    if not longest:
        return longest
    tallest = max(r for r, _ in longest.values()) + 1
    for cap in range(tallest, 1, -1):  # the tallest a segment's column may be
        rows = _u_grid(graph, view, ordered, levels, cap)
        height = max(r for r, _ in rows.values()) + 1
        width = max(c for _, c in rows.values()) + 1
        gap = abs(width * _CELL_ASPECT / height - _U_ASPECT)
        if best_gap is None or gap < best_gap - 1e-9:
            best, best_gap = rows, gap
    return best


def _u_grid(graph: nx.DiGraph, view: View, ordered: list[VNode],
            levels: dict[str, int] | None = None, cap: int = 0) -> dict[str, tuple[int, int]]:
    """Row and column of each node in a U, as in Ronneberger et al.'s figure.

    Consecutive nodes at one resolution form a segment, drawn as a short column; the
    segments go left to right in drawing order, each resolution a band of rows, lower
    resolutions lower: the encoder steps down on the left, the decoder up on the right.
    A decoder segment is shifted down within its band so that the long skip into it
    leaves its encoder node on the same row: the skip is horizontal.
    """
    levels = _node_levels(graph, view) if levels is None else levels  # given: a tensor's own (paper.py)
    segment: dict[str, int] = {}
    index: dict[str, int] = {}
    lengths: list[int] = []
    seg_level: list[int] = []
    for vnode in ordered:
        if not lengths or levels[vnode.key] != seg_level[-1]:
            lengths.append(0)
            seg_level.append(levels[vnode.key])
        segment[vnode.key], index[vnode.key] = len(lengths) - 1, lengths[-1]
        lengths[-1] += 1
    # folded: a segment of n nodes is at most ``cap`` rows tall (0: no cap), its columns side
    # by side and as even as can be
    tall = [-(-n // -(-n // cap)) if cap else n for n in lengths]
    column = {key: index[key] // tall[segment[key]] for key in index}
    index = {key: index[key] % tall[segment[key]] for key in index}
    lengths = tall
    first_column, at = [], 0
    for seg in range(len(lengths)):
        first_column.append(at)
        at += max((column[k] for k in column if segment[k] == seg), default=0) + 1
    offset = [0] * len(lengths)
    for edge in sorted(view.edges, key=lambda e: (segment[e.dst], index[e.dst])):
        if edge.kind in LONG_SKIPS and levels[edge.src] == levels[edge.dst] \
                and segment[edge.src] < segment[edge.dst]:
            need = offset[segment[edge.src]] + index[edge.src] - index[edge.dst]
            if need >= 0:
                offset[segment[edge.dst]] = max(offset[segment[edge.dst]], need)
            else:
                offset[segment[edge.src]] -= need
    height: dict[int, int] = {}
    for seg, level in enumerate(seg_level):
        height[level] = max(height.get(level, 0), offset[seg] + lengths[seg])
    start, top = {}, 0
    for level in sorted(height):
        start[level], top = top, top + height[level]
    return {key: (start[seg_level[segment[key]]] + offset[segment[key]] + index[key],
                  first_column[segment[key]] + column[key]) for key in segment}


#: A U is drawn on a grid of rows x segments (invisible cells fill it); past this many
#: cells the network is drawn as a column instead.
MAX_U_CELLS = 4_000


def _u_cells(graph: nx.DiGraph, view: View) -> int:
    rows = _u_rows(graph, view, sorted(view.nodes.values(), key=lambda n: n.order))
    return (max(r for r, _ in rows.values()) + 1) * (max(s for _, s in rows.values()) + 1) if rows else 0


def _u_rank_lines(rows: dict[str, tuple[int, int]], ordered: list[VNode]) -> list[str]:
    """Pin the U on a grid: every row x segment cell holds its node or an invisible one;
    each row is ranked together and chained left to right, each segment's cells are
    chained top to bottom with a heavy weight, so segments are straight columns in order."""
    cell = {(row, seg): key for key, (row, seg) in rows.items()}
    count = max(r for r, _ in rows.values()) + 1
    columns = max(s for _, s in rows.values()) + 1
    lines = []
    for row in range(count):
        names = []
        for seg in range(columns):
            if (row, seg) not in cell:
                cell[row, seg] = f"u_{row}_{seg}"
                lines.append(f"  u_{row}_{seg} [shape=point, style=invis, width=0, height=0, label=\"\"];")
            names.append(cell[row, seg])
        lines.append("  {rank=same; " + "; ".join(names) + ";}")
        lines += [f"  {a} -> {b} [style=invis];" for a, b in zip(names, names[1:])]
    for seg in range(columns):
        lines += [f"  {cell[row, seg]} -> {cell[row + 1, seg]} [style=invis, weight=20];"
                  for row in range(count - 1)]
    return lines


def _legend(kinds: list[str], cropped: bool = False, title: str = "skips") -> list[str]:
    """A boxed key: one short sample edge per skip kind in the drawing (``title`` above it;
    the paper style has none)."""
    if not kinds:
        return []
    lines = ["  subgraph cluster_legend {",
             f'    label="{title}"; fontsize=10; style="rounded"; color="#aaaaaa"; labeljust=l;']
    for kind in kinds:
        style, text = EDGE_STYLE[kind]
        if kind == "long-concat" and cropped:
            text = "long skip, copy and crop (concat)"
        slug = kind.replace("-", "_")
        lines.append(f"    legend_{slug}_a [shape=point, width=0.05, label=\"\"];")
        lines.append(f"    legend_{slug}_b [shape=plaintext, fontsize=10, label={_quote(text)}];")
        lines.append(f"    legend_{slug}_a -> legend_{slug}_b [kind={_quote(kind)}, legend=true, {style}];")
    lines.append("  }")
    return lines


def _node_id(path: str) -> str:
    """A DOT id for a container path: module names may hold '-' (RegNet's ``block1-0``),
    which DOT ids may not; each other character becomes its code, so ids stay distinct."""
    return "g_" + "".join(c if c.isalnum() and c.isascii() else "_" if c == "." else f"_{ord(c):x}_"
                          for c in path)
