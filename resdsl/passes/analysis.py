"""What the graph says about a network, without torch: cost per stage and its paths.

Cost (per top-level statement, as in ``resdsl compile``'s table, and in total):

- **parameters**: the catalogue's counts, equal to torch's ``numel`` sum.
- **MACs** (multiply-accumulates) at batch 1, from each op's ``macs`` rule:
  conv, upconv and linear count one MAC per weight use (bias excluded);
  batchnorm, layernorm and groupnorm one per output element (the scale-and-shift
  they fold to at inference); pooling one per window element read; a residual or
  long add/mul one per output element; activations, concat, zero-pad shortcuts,
  flatten, upsample and dropout none. FLOPs = 2 x MACs.
- **activation memory**: float32 elements of every op's output at batch 1 (what
  autograd keeps for the backward pass; an upper bound), and the peak of tensors
  alive at once when ops run in graph order and each tensor is freed after its
  last use (inference).
- **receptive field**: the theoretical one, in input pixels per spatial
  dimension, of one output position (not clipped to the input size).

Paths: every path from the input to the output of the DAG, counted with
multiplicity (an edge feeding two ports of a node, as in ``add x`` with ``x``
current, is two paths). They are never enumerated: a dynamic programme in
topological order carries, per node, a polynomial whose coefficient ``c[k]`` is
the number of paths from the input reaching it that cross ``k`` counted nodes.
Two such distributions are kept:

- the **length** in weight layers (conv, upconv, linear; a projection shortcut's
  1x1 conv counts, it is a layer on that path). For a ResNet of ``n`` identity
  units with two convs each, lengths are ``2 + 2k`` with ``C(n, k)`` paths: the
  binomial of Veit et al. 2016. Its mean is the **effective depth**.
- the number of **nonlinearities** (the activation ops: relu, gelu, ...). Max
  pooling is piecewise linear like relu but is not counted, nor is ``mul``
  (bilinear gating): the question asked is about activation functions.

>>> import resdsl
>>> net = resdsl.loads('''
... network tiny:
...     input x: [8]
...     fc1: linear 8
...     residual:
...         fc2: linear 8
...         relu
...     residual:
...         fc3: linear 8
...         relu
...     head: linear 2
... ''')
>>> stats = path_stats(net.graph)
>>> stats.count, stats.lengths, stats.min_nonlinear, stats.max_nonlinear
(4, {2: 1, 3: 2, 4: 1}, 0, 2)
>>> float(stats.effective_depth)
3.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import ceil, prod
from typing import TYPE_CHECKING, Any, Callable, Iterable

import networkx as nx

from ..graph import containers, format_shape, residual_units, top_level_groups
from ..ops import REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Net

BYTES_PER_ELEMENT = 4  # float32

# ---- polynomials over path counts ---------------------------------------------------
# A distribution is (offset, coeffs): coeffs[i] paths cross offset + i counted nodes.
# Shifting only moves the offset, so a chain of ops shares one list and the work is
# O(merges x length), not O(nodes x length): ResNet-1202 takes a fraction of a second.
Poly = tuple[int, list[int]]


def _poly_sum(terms: Iterable[tuple[int, Poly]]) -> Poly:
    """Sum of ``multiplicity * poly`` over the terms."""
    terms = list(terms)
    if len(terms) == 1 and terms[0][0] == 1:
        return terms[0][1]
    low = min(offset for _, (offset, _) in terms)
    high = max(offset + len(coeffs) for _, (offset, coeffs) in terms)
    out = [0] * (high - low)
    for times, (offset, coeffs) in terms:
        start = offset - low
        for i, c in enumerate(coeffs):
            out[start + i] += times * c
    return low, out


def _poly_dict(poly: Poly) -> dict[int, int]:
    offset, coeffs = poly
    return {offset + i: c for i, c in enumerate(coeffs) if c}


def path_polynomial(graph: nx.DiGraph, cost: Callable[[int], int], source: int | None = None,
                    target: int | None = None) -> dict[int, int]:
    """``{k: number of paths from source to target whose nodes' costs sum to k}``.

    The source's own cost is not counted, the target's is. Paths are counted with
    multiplicity by edge ports. Empty if no path exists.

    >>> g = nx.DiGraph()
    >>> g.add_edge(0, 1, ports=(0,)); g.add_edge(1, 2, ports=(0, 1)); g.add_edge(0, 2, ports=(2,))
    >>> path_polynomial(g, lambda n: 1 if n == 1 else 0, 0, 2)
    {0: 1, 1: 2}
    """
    source = graph.graph["input"] if source is None else source
    target = graph.graph["output"] if target is None else target
    order = [n for n in sorted(graph.nodes) if source <= n <= target]  # ids are topological
    pending = {n: graph.out_degree(n) for n in order}  # free a node's poly after its last use
    polys: dict[int, Poly] = {source: (0, [1])}
    for node in order:
        if node != source:
            terms = [(len(graph.edges[u, node]["ports"]), polys[u])
                     for u in graph.predecessors(node) if u in polys]
            if terms:
                offset, coeffs = _poly_sum(terms)
                polys[node] = (offset + cost(node), coeffs)
        for u in graph.predecessors(node):
            if u in pending:
                pending[u] -= 1
                if pending[u] == 0 and u != target:
                    polys.pop(u, None)
    return _poly_dict(polys[target]) if target in polys else {}


def _category_cost(graph: nx.DiGraph, test: Callable[[Any], bool]) -> Callable[[int], int]:
    return lambda node: 1 if test(REGISTRY[graph.nodes[node]["op"]]) else 0


def is_weight_layer(graph: nx.DiGraph, node: int) -> bool:
    return REGISTRY[graph.nodes[node]["op"]].weighted


def is_nonlinearity(graph: nx.DiGraph, node: int) -> bool:
    return REGISTRY[graph.nodes[node]["op"]].nonlinear


@dataclass(frozen=True)
class PathStats:
    """Paths between two nodes: their number and two distributions over them."""

    lengths: dict[int, int]  # weight layers crossed -> number of paths
    nonlinear: dict[int, int]  # nonlinearities crossed -> number of paths

    @property
    def count(self) -> int:
        return sum(self.lengths.values())

    @property
    def effective_depth(self) -> Fraction:
        """Mean length in weight layers over all paths (exact)."""
        return Fraction(sum(k * c for k, c in self.lengths.items()), self.count or 1)

    @property
    def length_std(self) -> float:
        mean = self.effective_depth
        var = Fraction(sum(c * (k - mean) ** 2 for k, c in self.lengths.items()), self.count or 1)
        return float(var) ** 0.5

    @property
    def min_length(self) -> int | None:
        return min(self.lengths, default=None)

    @property
    def max_length(self) -> int | None:
        return max(self.lengths, default=None)

    @property
    def min_nonlinear(self) -> int | None:
        return min(self.nonlinear, default=None)

    @property
    def max_nonlinear(self) -> int | None:
        return max(self.nonlinear, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "lengths": [[k, c] for k, c in sorted(self.lengths.items())],
            "effective_depth": float(self.effective_depth),
            "length_std": self.length_std,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "nonlinearities": [[k, c] for k, c in sorted(self.nonlinear.items())],
            "min_nonlinear": self.min_nonlinear,
            "max_nonlinear": self.max_nonlinear,
        }


def path_stats(graph: nx.DiGraph, source: int | None = None, target: int | None = None) -> PathStats:
    """Paths from ``source`` (default: the input) to ``target`` (default: the output)."""
    return PathStats(
        lengths=path_polynomial(graph, _category_cost(graph, lambda op: op.weighted), source, target),
        nonlinear=path_polynomial(graph, _category_cost(graph, lambda op: op.nonlinear), source, target),
    )


def count_paths(graph: nx.DiGraph) -> int:
    """Number of input-to-output paths (exact; with multiplicity by ports).

    A plain network has one; a residual network with n units has 2**n.
    """
    return sum(path_polynomial(graph, lambda node: 0).values())


# ---- blocks: does every path through a block cross a nonlinearity? ------------------
@dataclass(frozen=True)
class BlockPaths:
    """Nonlinearities on the paths through one residual unit's enclosing block."""

    path: str  # the block's module path (or the unit's merge, at top level)
    shortcut: str
    min_nonlinear: int
    max_nonlinear: int


def block_paths(graph: nx.DiGraph) -> list[BlockPaths]:
    """For each residual unit, nonlinearities crossed from its block's input to output.

    The block is the innermost container holding the unit (``layer1.0``), so a
    post-activation block's relu after the merge counts; a top-level unlabelled
    residual is measured from its input to its merge.
    """
    boxes = containers(graph)
    rows = []
    for unit in residual_units(graph):
        box = boxes.get(unit.container)
        if box is None or box.kind == "network":
            source, target, where = unit.input, unit.merge, graph.nodes[unit.merge]["module"]
        else:
            source, target, where = box.input, box.output, box.path
        counts = path_polynomial(graph, _category_cost(graph, lambda op: op.nonlinear), source, target)
        rows.append(BlockPaths(where, unit.shortcut, min(counts), max(counts)))
    return rows


def trunk_stats(graph: nx.DiGraph) -> PathStats | None:
    """Paths from the first residual block's input to the last one's output ("stem to
    head"); None for a network without residual units."""
    units = residual_units(graph)
    if not units:
        return None
    boxes = containers(graph)

    def ends(unit) -> tuple[int, int]:
        box = boxes.get(unit.container)
        return (unit.input, unit.merge) if box is None or box.kind == "network" else (box.input, box.output)

    return path_stats(graph, ends(units[0])[0], max(ends(u)[1] for u in units))


# ---- cost -----------------------------------------------------------------------------
def node_macs(graph: nx.DiGraph, node: int) -> int:
    """MACs of one op at batch 1 (see the module docstring for what is counted)."""
    data = graph.nodes[node]
    in_shape = data["in_shapes"][0] if data["in_shapes"] else data["shape"]
    return REGISTRY[data["op"]].macs(in_shape, data["shape"], data["args"])


def peak_activations(graph: nx.DiGraph) -> int:
    """Most float elements alive at once when running in graph order at batch 1."""
    remaining = {n: graph.out_degree(n) for n in graph.nodes}
    alive: dict[int, int] = {}
    peak = 0
    for node in sorted(graph.nodes):
        alive[node] = prod(graph.nodes[node]["shape"])
        peak = max(peak, sum(alive.values()))
        for u in graph.predecessors(node):
            remaining[u] -= 1
            if remaining[u] == 0:
                alive.pop(u, None)
    return peak


# Receptive field: per spatial dimension, the field (in input pixels) of one position
# and the jump (input pixels between adjacent positions), the usual recurrence
# rf' = rf + (k - 1) * dilation * jump, jump' = jump * stride.
Field = tuple[tuple[Fraction, ...], tuple[Fraction, ...]]


def _widen(field_: Field, kernels: Iterable[int], strides: Iterable[Fraction]) -> Field:
    rf, jump = field_
    rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernels, jump))
    return rf, tuple(j * s for j, s in zip(jump, strides))


def _op_field(data: dict, field_: Field) -> Field | None:
    op, args, rank = data["op"], data["args"], len(field_[0])
    in_spatial = data["in_shapes"][0][1:] if data["in_shapes"] else ()
    if op == "conv":
        kernels = [(k - 1) * d + 1 for k, d in zip(args["kernel"], args["dilation"])]
        return _widen(field_, kernels, args["stride"])
    if op in ("maxpool", "avgpool"):
        return _widen(field_, args["kernel"], args["stride"])
    if op == "adaptive_avgpool":
        if all(o == 1 for o in args["size"]):
            return None  # global pooling: every input position
        return _widen(field_, [ceil(n / o) for n, o in zip(in_spatial, args["size"])],
                      [Fraction(n, o) for n, o in zip(in_spatial, args["size"])])
    if op == "upconv":  # an output position sees ceil(k / s) input positions
        rf, jump = field_
        rf = tuple(r + (ceil(k / s) - 1) * j for r, k, s, j in zip(rf, args["kernel"], args["stride"], jump))
        return rf, tuple(j / s for j, s in zip(jump, args["stride"]))
    if op == "upsample":
        taps = {"nearest": 1, "linear": 2, "bicubic": 4}[args["mode"]]
        rf, jump = _widen(field_, [taps] * rank, [1] * rank)
        return rf, tuple(j / args["factor"] for j in jump)
    if op == "zero_pad":
        return _widen(field_, [1] * rank, args["stride"])
    if op == "flatten" and len(in_spatial) == rank and any(n > 1 for n in in_spatial):
        return None  # what follows (a linear layer) mixes every position
    return field_


def receptive_fields(graph: nx.DiGraph) -> dict[int, tuple[int, ...] | None]:
    """Theoretical receptive field of every node's output, per input spatial dimension.

    ``None`` marks a global node (after global pooling, or a flatten of a spatial
    tensor): it sees the whole input. Empty for a flat input (an MLP has no
    receptive field). Merges take the widest of their inputs.

    >>> import resdsl
    >>> net = resdsl.loads('''
    ... network n:
    ...     input x: [1, 32, 32]
    ...     c1: conv 3x3, 4
    ...     p: maxpool 2x2
    ...     c2: conv 3x3, 4
    ... ''')
    >>> receptive_fields(net.graph)[net.graph.graph["output"]]
    (8, 8)
    """
    start = graph.graph["input"]
    rank = len(graph.nodes[start]["shape"]) - 1
    if rank == 0:
        return {}
    fields: dict[int, Field | None] = {start: ((Fraction(1),) * rank, (Fraction(1),) * rank)}
    for node in sorted(graph.nodes):
        data = graph.nodes[node]
        if node == start or not data["inputs"]:
            continue
        ins = [fields[i] for i in data["inputs"]]
        if any(f is None for f in ins):
            fields[node] = None
            continue
        widest = tuple(max(f[0][d] for f in ins) for d in range(rank))
        fields[node] = _op_field(data, (widest, ins[0][1]))
    return {n: None if f is None else tuple(ceil(r) for r in f[0]) for n, f in fields.items()}


# ---- the report -----------------------------------------------------------------------
def _rf_json(field_: tuple[int, ...] | None) -> list[int] | str | None:
    return "global" if field_ is None else list(field_) or None


@dataclass(frozen=True)
class StageCost:
    name: str
    kind: str
    output_shape: str
    params: int
    macs: int
    activations: int  # float elements of every op's output, batch 1
    receptive_field: tuple[int, ...] | None  # None: global; (): a flat network

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "output_shape": self.output_shape,
                "params": self.params, "macs": self.macs, "flops": 2 * self.macs,
                "activations": self.activations,
                "activation_bytes": BYTES_PER_ELEMENT * self.activations,
                "receptive_field": _rf_json(self.receptive_field)}


@dataclass(frozen=True)
class Analysis:
    """Everything :func:`analyze` measures on one graph."""

    name: str
    stages: list[StageCost]
    peak_activations: int
    receptive_field: tuple[int, ...] | None  # the widest local field (before global pooling)
    paths: PathStats
    trunk: PathStats | None
    blocks: list[BlockPaths] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(s.params for s in self.stages)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)

    @property
    def activations(self) -> int:
        return sum(s.activations for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``paths`` is the exact number of input-output paths (an int)."""
        return {
            "name": self.name,
            "params": self.params,
            "macs": self.macs,
            "flops": 2 * self.macs,
            "activations": self.activations,
            "activation_bytes": BYTES_PER_ELEMENT * self.activations,
            "peak_activation_bytes": BYTES_PER_ELEMENT * self.peak_activations,
            "receptive_field": _rf_json(self.receptive_field),
            "stages": [s.to_dict() for s in self.stages],
            "paths": self.paths.count,
            "path_stats": self.paths.to_dict(),
            "trunk": self.trunk.to_dict() if self.trunk else None,
            "residual_blocks": [
                {"block": b.path, "shortcut": b.shortcut, "min_nonlinear": b.min_nonlinear,
                 "max_nonlinear": b.max_nonlinear} for b in self.blocks
            ],
        }

    def render(self) -> str:
        """A human-readable report (what ``resdsl analyze`` prints)."""
        return "\n".join(_cost_lines(self) + [""] + _path_lines(self))


def _stage_kind(graph: nx.DiGraph, name: str, nodes: list[int]) -> str:
    box = containers(graph).get(name)
    if box is None:
        return graph.nodes[nodes[-1]]["op"]
    if box.kind == "stage":
        return f"{box.block} x {len(box.children)}"
    return (box.block or "block") if box.kind == "block" else box.kind


def stage_costs(graph: nx.DiGraph) -> list[StageCost]:
    """One row per top-level statement (the stem's ops one by one, each stage as one)."""
    fields = receptive_fields(graph)
    boxes = containers(graph)
    rows = []
    for name, nodes in top_level_groups(graph):
        out = boxes[name].output if name in boxes else nodes[-1]
        rows.append(StageCost(
            name=name, kind=_stage_kind(graph, name, nodes),
            output_shape=format_shape(graph.nodes[out]["shape"]),
            params=sum(graph.nodes[n]["params"] for n in nodes),
            macs=sum(node_macs(graph, n) for n in nodes),
            activations=sum(prod(graph.nodes[n]["shape"]) for n in nodes),
            receptive_field=fields.get(out, ()),
        ))
    return rows


def analyze(net: "Net | nx.DiGraph") -> Analysis:
    """Cost, receptive field and paths of a loaded network (no torch).

    >>> import resdsl
    >>> a = analyze(resdsl.load("specs/cifar_resnet.res", n=9))  # ResNet-56
    >>> a.params, a.paths.count == 2 ** 27, a.paths.min_nonlinear
    (853018, True, 28)
    """
    graph = net if isinstance(net, nx.DiGraph) else net.graph
    local = [f for f in receptive_fields(graph).values() if f is not None]
    return Analysis(
        name=graph.graph.get("name", ""),
        stages=stage_costs(graph),
        peak_activations=peak_activations(graph),
        receptive_field=tuple(max(f[d] for f in local) for d in range(len(local[0]))) if local else (),
        paths=path_stats(graph),
        trunk=trunk_stats(graph),
        blocks=block_paths(graph),
    )


# ---- text rendering -------------------------------------------------------------------
def _si(number: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.2f}{unit}"
    return f"{number:.0f}"


def _big(number: int) -> str:
    """Exact below 10**15, else 2**x with the exact digit count."""
    if number < 10**15:
        return f"{number:,}"
    exponent = number.bit_length() - 1
    exact = " (= 2^%d)" % exponent if number == 1 << exponent else ""
    return f"{number:.3e}".replace("e+", "e") + f", {len(str(number))} digits{exact}"


def _rf(field_: tuple[int, ...] | None) -> str:
    return "global" if field_ is None else "x".join(str(d) for d in field_) or "-"


def _cost_lines(a: Analysis) -> list[str]:
    header = ("name", "kind", "output", "params", "MACs", "act. mem", "RF")
    rows = [(s.name, s.kind, s.output_shape, f"{s.params:,}", _si(s.macs),
             _si(BYTES_PER_ELEMENT * s.activations) + "B", _rf(s.receptive_field)) for s in a.stages]
    rows.append(("total", "", "", f"{a.params:,}", _si(a.macs),
                 _si(BYTES_PER_ELEMENT * a.activations) + "B", _rf(a.receptive_field)))
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    left = {0, 1, 2}
    lines = [f"{a.name}: cost at batch 1"]
    for row in [header] + rows:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  " + "  ".join(cells).rstrip())
    lines += [
        f"  FLOPs = 2 x MACs = {_si(2 * a.macs)}. MACs: conv/linear weights; norms, adds: 1 per element; "
        "pools: 1 per window element; activations: 0.",
        f"  Activation memory: sum of op outputs (float32, kept for backward); "
        f"peak alive in inference {_si(BYTES_PER_ELEMENT * a.peak_activations)}B. RF: theoretical, in input pixels.",
    ]
    return lines


def _path_lines(a: Analysis) -> list[str]:
    p = a.paths
    lines = [
        "paths from input to output (weight layers: conv, upconv, linear, projections included; "
        "nonlinearities: activation ops, not maxpool)",
        f"  paths: {_big(p.count)}",
        f"  length in weight layers: min {p.min_length}, max {p.max_length}, "
        f"mean (effective depth) {float(p.effective_depth):.2f}, std {p.length_std:.2f}",
        f"  nonlinearities on a path: min {p.min_nonlinear}, max {p.max_nonlinear}",
    ]
    if len(p.lengths) > 1:
        lines.append("  length distribution: " + _histogram(p.lengths))
    if a.trunk is not None:
        t = a.trunk
        lines.append(f"  stem to head (first block's input to last block's output): "
                     f"nonlinearities min {t.min_nonlinear}, max {t.max_nonlinear}"
                     + ("  <- a path with no nonlinearity exists" if t.min_nonlinear == 0 else ""))
    if a.blocks:
        crossing = sum(1 for b in a.blocks if b.min_nonlinear > 0)
        lines.append(f"  residual blocks where every path crosses a nonlinearity: {crossing} of {len(a.blocks)}")
    elif p.count == 1:
        lines.append("  a single path: a plain network")
    return lines


def _histogram(lengths: dict[int, int]) -> str:
    """The most common lengths with their share of paths, e.g. ``29: 15.3%``."""
    total = sum(lengths.values())
    top = sorted(lengths.items(), key=lambda kv: -kv[1])[:5]
    return ", ".join(f"{k}: {100 * c / total:.1f}%" for k, c in sorted(top))
