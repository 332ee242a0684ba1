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
  dimension, of one output position (not clipped to the input size; it
  saturates at 2^62, shown as ``>=2^62``).

Paths: every path from the input to the output of the DAG, counted with
multiplicity (an edge feeding two ports of a node, as in ``add x`` with ``x``
current, is two paths), never enumerated (:mod:`.paths`). Two distributions are
kept:

- the **length** in weight layers (conv, upconv, linear; a projection shortcut's
  1x1 conv counts, it is a layer on that path). For a ResNet of ``n`` identity
  units with two convs each, lengths are ``2 + 2k`` with ``C(n, k)`` paths: the
  binomial of Veit et al. 2016. Its mean is the **effective depth**.
- the number of **nonlinearities** (ops whose entry declares ``nonlinear``: the
  activation ops relu, gelu, ...). Max
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
from decimal import Decimal
from fractions import Fraction
import math
from math import ceil, prod
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

import networkx as nx

from ..graph import containers, gc_paused, op_node, residual_units, top_level_groups
from ..ops import GLOBAL, POINTWISE, REGISTRY, field_of
from ..shapes import format_shape
from .paths import EXACT_BITS, Dag, Inexact, Moments, as_dag, count_step, distribution, fold, min_max

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Net

BYTES_PER_ELEMENT = 4  # float32

def _category_cost(dag: Dag, test: Callable[[Any], bool]) -> Callable[[int], int]:
    """1 for the nodes whose op passes ``test`` (a bool, which adds as an int), else 0."""
    return dag.flags(test).__contains__


def _weighted(op: Any) -> bool:
    return op.weighted


def _nonlinear(op: Any) -> bool:
    return op.nonlinear


@dataclass(frozen=True)
class PathStats:
    """Paths between two nodes: their number and two distributions over them.

    Within the exact bound (:data:`EXACT_WORK`, :data:`EXACT_BITS`) ``lengths`` and
    ``nonlinear`` give the exact number of paths per value. Beyond it a distribution
    is empty and its ``*_moments`` summarise it: least and most exact, mean and
    spread in floating point; ``count`` is then exact up to 2**EXACT_BITS, else None
    (``log2_count`` always answers).
    """

    lengths: dict[int, int]  # weight layers crossed -> number of paths
    nonlinear: dict[int, int]  # nonlinearities crossed -> number of paths
    length_moments: Moments | None = None  # set when ``lengths`` is over the exact bound
    nonlinear_moments: Moments | None = None
    exact_count: int | None = None  # the count when neither distribution is exact

    @property
    def exact(self) -> bool:
        return self.length_moments is None and self.nonlinear_moments is None

    @property
    def count(self) -> int | None:
        """Exact number of paths, or None when it is over 2**EXACT_BITS."""
        if self.length_moments is None:
            return sum(self.lengths.values())
        if self.nonlinear_moments is None:
            return sum(self.nonlinear.values())
        return self.exact_count

    @property
    def log2_count(self) -> float | None:
        count = self.count
        if count is not None:
            return math.log2(count) if count else None
        return self.length_moments.log2_count if self.length_moments else None

    @property
    def effective_depth(self) -> Fraction | float:
        """Mean length in weight layers over all paths (exact within the bound)."""
        if self.length_moments is not None:
            return self.length_moments.mean
        return Fraction(sum(k * c for k, c in self.lengths.items()), self.count or 1)

    @property
    def length_std(self) -> float:
        if self.length_moments is not None:
            return math.sqrt(max(self.length_moments.var, 0.0))
        # exact in integers: var = (n * sum k^2 c - (sum k c)^2) / n^2
        n = sum(self.lengths.values())
        s1 = sum(k * c for k, c in self.lengths.items())
        s2 = sum(k * k * c for k, c in self.lengths.items())
        return math.sqrt(Fraction(n * s2 - s1 * s1, n * n)) if n else 0.0

    @property
    def min_length(self) -> int | None:
        return self.length_moments.low if self.length_moments else min(self.lengths, default=None)

    @property
    def max_length(self) -> int | None:
        return self.length_moments.high if self.length_moments else max(self.lengths, default=None)

    @property
    def min_nonlinear(self) -> int | None:
        m = self.nonlinear_moments
        return m.low if m else min(self.nonlinear, default=None)

    @property
    def max_nonlinear(self) -> int | None:
        m = self.nonlinear_moments
        return m.high if m else max(self.nonlinear, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; counts are ints within the exact bound, ``count`` None beyond it."""
        return {
            "count": self.count,
            "log2_count": self.log2_count,
            "exact": self.exact,
            "lengths": [[k, c] for k, c in sorted(self.lengths.items())],
            "effective_depth": float(self.effective_depth),
            "length_std": self.length_std,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "nonlinearities": [[k, c] for k, c in sorted(self.nonlinear.items())],
            "min_nonlinear": self.min_nonlinear,
            "max_nonlinear": self.max_nonlinear,
        }


def path_stats(graph: "nx.DiGraph | Dag", source: int | None = None,
               target: int | None = None) -> PathStats:
    """Paths from ``source`` (default: the input) to ``target`` (default: the output).

    Beyond the exact bound the work is linear in the graph, so any network the
    front end accepts is answered in bounded time.
    """
    dag = as_dag(graph)
    source = dag.graph.graph["input"] if source is None else source
    target = dag.graph.graph["output"] if target is None else target
    lengths, length_moments = distribution(dag, _category_cost(dag, _weighted), source, target)
    nonlinear, nonlinear_moments = distribution(dag, _category_cost(dag, _nonlinear), source, target)
    exact_count = None
    if (length_moments is not None and nonlinear_moments is not None
            and length_moments.log2_count < EXACT_BITS + 1):  # else it cannot fit: skip the pass
        try:
            exact_count = fold(dag, source, target, 1, count_step)
        except Inexact:
            pass
    return PathStats(lengths, nonlinear, length_moments, nonlinear_moments, exact_count)


# ---- blocks: does every path through a block cross a nonlinearity? ------------------
@dataclass(frozen=True)
class BlockPaths:
    """Nonlinearities on the paths through one residual unit's enclosing block."""

    path: str  # the block's module path (or the unit's merge, at top level)
    shortcut: str
    min_nonlinear: int
    max_nonlinear: int


def block_paths(graph: "nx.DiGraph | Dag") -> list[BlockPaths]:
    """For each residual unit, nonlinearities crossed from its block's input to output.

    The block is the innermost container holding the unit (``layer1.0``), so a
    post-activation block's relu after the merge counts; a top-level unlabelled
    residual is measured from its input to its merge. Each (input, output) pair is
    measured once: a block holding thousands of units costs one pass, not thousands.
    """
    dag = as_dag(graph)
    graph = dag.graph
    boxes = containers(graph)
    cost = _category_cost(dag, _nonlinear)
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    rows = []
    for unit in residual_units(graph):
        box = boxes.get(unit.container)
        if box is None or box.kind == "network":
            source, target, where = unit.input, unit.merge, op_node(graph, unit.merge).module
        else:
            source, target, where = box.input, box.output, box.path
        if (source, target) not in seen:
            seen[source, target] = min_max(dag, cost, source, target)
        rows.append(BlockPaths(where, unit.shortcut, *seen[source, target]))
    return rows


def trunk_stats(graph: "nx.DiGraph | Dag") -> PathStats | None:
    """Paths from the first residual block's input to the last one's output ("stem to
    head"); None for a network without residual units."""
    dag = as_dag(graph)
    graph = dag.graph
    units = residual_units(graph)
    if not units:
        return None
    boxes = containers(graph)

    def ends(unit) -> tuple[int, int]:
        box = boxes.get(unit.container)
        return (unit.input, unit.merge) if box is None or box.kind == "network" else (box.input, box.output)

    return path_stats(dag, ends(units[0])[0], max(ends(u)[1] for u in units))


# ---- cost -----------------------------------------------------------------------------
def node_macs(graph: nx.DiGraph, node: int) -> int:
    """MACs of one op at batch 1 (see the module docstring for what is counted)."""
    data = op_node(graph, node)
    in_shape = data.in_shapes[0] if data.in_shapes else data.shape
    return REGISTRY[data.op].macs(in_shape, data.shape, data.args)


def peak_activations(graph: nx.DiGraph) -> int:
    """Most float elements alive at once when running in graph order at batch 1."""
    remaining = {n: graph.out_degree(n) for n in graph.nodes}
    alive: dict[int, int] = {}
    total = peak = 0  # a running sum: re-adding every live tensor per op is quadratic
    for node in sorted(graph.nodes):
        alive[node] = prod(op_node(graph, node).shape)
        total += alive[node]
        peak = max(peak, total)
        for u in graph.predecessors(node):
            remaining[u] -= 1
            if remaining[u] == 0 and u in alive:
                total -= alive.pop(u)
    return peak


# Receptive field: per spatial dimension, the field (in input pixels) of one position
# and the jump (input pixels between adjacent positions), the usual recurrence
# rf' = rf + (k - 1) * dilation * jump, jump' = jump * stride.
# Values are exact Fractions while numerator and denominator fit 64 bits, then floats
# saturating at RF_CAP: 10**5 stride-2 convs on a 1x1 map make a field of 2**100000,
# and a stride-2-then-upsample-x3 chain a jump of 2**a / 3**b (work and digits would
# grow with every op). RF_CAP is far beyond any input (max_tensor_elements).
Field = tuple[tuple[Fraction | float, ...], tuple[Fraction | float, ...]]
RF_CAP = 2 ** 62


def _settle(value: int | Fraction | float) -> int | Fraction | float:
    """An int or Fraction while exact and small (ints: the common case, and fast), else a
    float at most RF_CAP."""
    if type(value) is int and value < RF_CAP:
        return value
    if isinstance(value, float):
        return min(value, float(RF_CAP))
    if value.denominator == 1 and value.numerator.bit_length() <= 64:
        return int(value)
    if value.numerator.bit_length() <= 64 and value.denominator.bit_length() <= 64:
        return value
    return float(RF_CAP) if value >= RF_CAP else float(value)


def _div(value: int | Fraction | float, by: int | float) -> Fraction | float:
    """``value / by``, exact unless either side is already a float."""
    return value / by if isinstance(value, float) or isinstance(by, float) else Fraction(value, 1) / by


def _widen(field_: Field, kernels: Iterable[int], strides: Iterable[int | Fraction],
           upscale: Iterable[int] | None = None) -> Field:
    rf, jump = field_
    rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernels, jump))
    jump = tuple(j * s for j, s in zip(jump, strides))
    if upscale is not None:
        jump = tuple(_div(j, u) for j, u in zip(jump, upscale))
    return rf, jump


#: Per dim of a tensor (channels first): the network input's dim it runs along (0: the
#: channels, k: spatial dim k), or None for a dim that none maps to. The identity until a
#: ``moves_dims`` op (permute) reorders it, so a window follows the dims it slides along.
Layout = tuple[Union[int, None], ...]


def _layout(data: dict, layouts: dict[int, Layout]) -> Layout:
    """The output's layout: its first input's, reordered by a ``moves_dims`` op."""
    spec = REGISTRY[data.op]
    rank = len(data.shape)
    known = [layouts[i] for i in data.inputs if i in layouts]
    if spec.moves_dims is not None and known:
        # None: an output dim that merges several input dims (tokens of a 2-D map)
        return tuple(None if d is None else known[0][d] for d in spec.moves_dims(data.in_shapes[0], data.args))
    same = next((lay for lay in known if len(lay) == rank), None)
    return same if same is not None else tuple(range(rank))


def _op_field(data: dict, field_: Field, layout: Layout | None = None) -> Field | None:
    """The field after one op, from its catalogue entry's ``receptive_field``: every op
    declares one (POINTWISE is a declaration, not a fallback); None: global. ``layout``:
    the input's (identity when None)."""
    in_shape = data.in_shapes[0] if data.in_shapes else data.shape
    window = field_of(REGISTRY[data.op], in_shape, data.shape, data.args)
    if window is POINTWISE:
        return field_
    if window is GLOBAL:
        return None
    if not window.kernel:  # a flat tensor: no spatial extent left to widen
        return field_
    rank = len(field_[0])
    spec = REGISTRY[data.op]
    first = 0 if spec.channels_last else 1  # the tensor dim the window's first dim slides along
    if spec.channels_last and layout is None:
        layout = tuple(range(len(in_shape)))
    if not spec.channels_last and (layout is None or layout == tuple(range(len(layout)))):
        if len(window.kernel) != rank:  # an op changed the spatial rank: positions do not map
            raise ValueError(f"op {data.op!r} has a {len(window.kernel)}-D window on a network "
                             f"whose input has {rank} spatial dimensions")
        return _widen(field_, window.kernel, window.stride, window.upscale)
    # A permuted tensor: the window's dim t slides along the input's dim layout[t + 1]; a
    # window along the channels (or an unmapped dim) widens no spatial field.
    kernel, stride, upscale = [1] * rank, [1] * rank, [1] * rank
    for t, dim in enumerate(layout[first:len(window.kernel) + first]):
        if dim:
            kernel[dim - 1], stride[dim - 1] = window.kernel[t], window.stride[t]
            upscale[dim - 1] = window.upscale[t] if window.upscale else 1
    return _widen(field_, kernel, stride, upscale)


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
    rank = len(op_node(graph, start).shape) - 1
    if rank == 0:
        return {}
    fields: dict[int, Field | None] = {start: ((1,) * rank, (1,) * rank)}
    layouts: dict[int, Layout] = {start: tuple(range(rank + 1))}
    for node in sorted(graph.nodes):
        data = op_node(graph, node)
        if node == start or not data.inputs:
            continue  # a tensor without inputs (a learnable parameter) sees no input position
        layouts[node] = _layout(data, layouts)
        ins = [fields[i] for i in data.inputs if i in fields]
        if not ins:
            continue
        if any(f is None for f in ins):
            fields[node] = None
            continue
        widest = tuple(max(f[0][d] for f in ins) for d in range(rank))
        first = next(i for i in data.inputs if i in fields)
        out = _op_field(data, (widest, ins[0][1]), layouts.get(first))
        fields[node] = None if out is None else (tuple(map(_settle, out[0])), tuple(map(_settle, out[1])))
    return {n: None if f is None else tuple(min(ceil(r), RF_CAP) for r in f[0]) for n, f in fields.items()}


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
        """JSON-ready; ``paths`` is the exact number of input-output paths (an int, or
        None over 2**EXACT_BITS; ``paths_log2`` always answers)."""
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
            "paths": self.paths.count,  # None beyond 2**EXACT_BITS: see paths_log2
            "paths_log2": self.paths.log2_count,
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
        return op_node(graph, nodes[-1]).op
    if box.kind == "stage":
        return f"{box.block} x {len(box.children)}"
    return (box.block or "block") if box.kind == "block" else box.kind


def stage_costs(graph: nx.DiGraph, fields: dict[int, tuple[int, ...] | None] | None = None) -> list[StageCost]:
    """One row per top-level statement (the stem's ops one by one, each stage as one)."""
    fields = receptive_fields(graph) if fields is None else fields
    boxes = containers(graph)
    rows = []
    for name, nodes in top_level_groups(graph):
        out = boxes[name].output if name in boxes else nodes[-1]
        rows.append(StageCost(
            name=name, kind=_stage_kind(graph, name, nodes),
            output_shape=format_shape(op_node(graph, out).shape),
            params=sum(op_node(graph, n).params for n in nodes),
            macs=sum(node_macs(graph, n) for n in nodes),
            activations=sum(prod(op_node(graph, n).shape) for n in nodes),
            receptive_field=fields.get(out, ()),
        ))
    return rows


@gc_paused()
def analyze(net: "Net | nx.DiGraph") -> Analysis:
    """Cost, receptive field and paths of a loaded network (no torch).

    >>> import resdsl
    >>> a = analyze(resdsl.load("resdsl/zoo/cifar_resnet.res", n=9))  # ResNet-56
    >>> a.params, a.paths.count == 2 ** 27, a.paths.min_nonlinear
    (853018, True, 28)
    """
    graph = net if isinstance(net, nx.DiGraph) else net.graph
    fields = receptive_fields(graph)
    local = [f for f in fields.values() if f is not None]
    dag = Dag(graph)
    return Analysis(
        name=graph.graph.get("name", ""),
        stages=stage_costs(graph, fields),
        peak_activations=peak_activations(graph),
        receptive_field=tuple(max(f[d] for f in local) for d in range(len(local[0]))) if local else (),
        paths=path_stats(dag),
        trunk=trunk_stats(dag),
        blocks=block_paths(dag),
    )


# ---- text rendering -------------------------------------------------------------------
def _si(number: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.2f}{unit}"
    return f"{number:.0f}"


def _big(number: int | None, log2: float | None = None) -> str:
    """Exact below 10**15, else scientific with the exact digit count (and 2^x when a
    power of two); never ``str()`` of an int over Python's 4,300-digit limit nor
    ``float()`` of one over 1e308. ``None``: only ``log2`` is known."""
    if number is None:
        if log2 is None:
            return "none"
        exponent = log2 * math.log10(2)
        mantissa = 10 ** (exponent - math.floor(exponent))
        return f"about {mantissa:.3f}e{math.floor(exponent)} (2^{log2:.1f})"
    if number < 10**15:
        return f"{number:,}"
    exponent = number.bit_length() - 1
    exact = " (= 2^%d)" % exponent if number == 1 << exponent else ""
    if exponent > EXACT_BITS:  # not reached by analyze, which stops being exact sooner
        return f"about 2^{math.log2(number):.1f}"
    digits = len(str(number))
    return format(Decimal(number), ".3e").replace("e+", "e") + f", {digits} digits{exact}"


def _rf(field_: tuple[int, ...] | None) -> str:
    if field_ is None:
        return "global"
    return "x".join(str(d) if d < RF_CAP else ">=2^62" for d in field_) or "-"


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
        f"  paths: {_big(p.count, p.log2_count)}",
        f"  length in weight layers: min {p.min_length}, max {p.max_length}, "
        f"mean (effective depth) {float(p.effective_depth):.2f}, std {p.length_std:.2f}",
        f"  nonlinearities on a path: min {p.min_nonlinear}, max {p.max_nonlinear}",
    ]
    if len(p.lengths) > 1:
        lines.append("  length distribution: " + _histogram(p.lengths))
    elif p.length_moments is not None and p.min_length != p.max_length:
        lines.append("  length distribution: too large to count exactly; min and max are exact, "
                     "mean and std in floating point")
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
