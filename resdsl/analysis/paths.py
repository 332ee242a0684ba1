"""Paths through a DAG, counted without enumerating them.

A dynamic programme in topological order (:func:`fold`) carries a value per node,
made from its predecessors' values and the number of ports each edge feeds (an
edge feeding two ports, as in ``add x`` with ``x`` current, is two paths). The
values are a polynomial whose coefficient ``c[k]`` is the number of paths
reaching the node that cross ``k`` counted nodes (exact, within a work budget),
its moments (O(1) per edge, any size), a path count, or least and most.
:mod:`.report` asks it about weight layers and nonlinearities.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from operator import add
from typing import Any, Callable, Iterable

import networkx as nx

from ..graph import op_edge, op_node, op_nodes
from ..ops import REGISTRY

# ---- polynomials over path counts ---------------------------------------------------
# A distribution is (offset, coeffs): coeffs[i] paths cross offset + i counted nodes.
# Shifting only moves the offset, so a chain of ops shares one list and the work is
# O(merges x length), not O(nodes x length): ResNet-1202 takes a fraction of a second.
# That product still grows as units**2 (and the integers' size as units), so analyze
# keeps the exact distribution only within EXACT_WORK and EXACT_BITS and otherwise
# summarises each distribution by moments carried in log space (O(1) per edge).
Poly = tuple[int, list[int]]

EXACT_BITS = 4096  # exact counts up to 2**4096 (1,234 digits: printable, JSON-safe)
EXACT_WORK = 20_000_000  # coefficient additions (x words) per report: 0.1-0.4 s


class Inexact(Exception):
    """The exact distribution would cost more than its budget."""


def _poly_sum(terms: Iterable[tuple[int, Poly]]) -> Poly:
    """Sum of ``multiplicity * poly`` over the terms."""
    terms = list(terms)
    if len(terms) == 1 and terms[0][0] == 1:
        return terms[0][1]
    low = min(offset for _, (offset, _) in terms)
    high = max(offset + len(coeffs) for _, (offset, coeffs) in terms)
    out = [0] * (high - low)
    for times, (offset, coeffs) in terms:
        start, end = offset - low, offset - low + len(coeffs)
        if times == 1:
            out[start:end] = map(add, out[start:end], coeffs)
        else:
            out[start:end] = [a + times * c for a, c in zip(out[start:end], coeffs)]
    return low, out


def _poly_dict(poly: Poly) -> dict[int, int]:
    offset, coeffs = poly
    return {offset + i: c for i, c in enumerate(coeffs) if c}


def _shape_only(graph: nx.DiGraph, node: int) -> bool:
    """An op that reads only its input's shape (``positions``); a bare DAG (tests' random
    graphs, with edges but no op data) has none."""
    try:
        return REGISTRY[op_node(graph, node).op].shape_only
    except KeyError:
        return False


class Dag:
    """The graph's adjacency read once: predecessors with their port counts, where
    each value is used last, and the topological order (node ids), so that the
    several dynamic programmes of one report do not each walk networkx's views."""

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph
        self.order = sorted(graph.nodes)
        self.index = {n: i for i, n in enumerate(self.order)}
        # An op that reads only its input's shape (positions) starts no path: no predecessors.
        self.preds = {v: [] if _shape_only(graph, v) else
                      [(u, len(op_edge(graph, u, v).ports)) for u in graph.predecessors(v)]
                      for v in self.order}
        self.frees: dict[int, list[int]] = {v: [] for v in self.order}  # node -> values it uses last
        for u in self.order:
            successors = graph.successors(u)
            last = max(successors, default=None)
            if last is not None:
                self.frees[last].append(u)
        self.budget = [EXACT_WORK]  # exact work left, shared by the distributions of one report
        self._flags: dict[Callable, frozenset[int]] = {}

    def span(self, source: int, target: int) -> list[int]:
        """The nodes a source-to-target path can cross: ids are topological."""
        return self.order[self.index[source]:self.index[target] + 1]

    def flags(self, test: Callable[[Any], bool]) -> frozenset[int]:
        """The nodes whose op passes ``test`` (computed once per test)."""
        if test not in self._flags:
            self._flags[test] = frozenset(data.id for data in op_nodes(self.graph) if test(REGISTRY[data.op]))
        return self._flags[test]


def as_dag(graph: "nx.DiGraph | Dag") -> Dag:
    return graph if isinstance(graph, Dag) else Dag(graph)


def fold(dag: Dag, source: int, target: int, start: Any,
          step: Callable[[int, list[tuple[int, Any]]], Any]) -> Any:
    """A dynamic programme over the nodes between ``source`` and ``target``.

    ``step(node, [(ports, value of predecessor), ...])`` makes a node's value from
    its predecessors'; values are dropped after their last use. None: no path.
    """
    values: dict[int, Any] = {source: start}
    preds, frees = dag.preds, dag.frees
    for node in dag.span(source, target):
        if node != source:
            terms = [(times, values[u]) for u, times in preds[node] if u in values]
            if terms:
                values[node] = step(node, terms)
        for u in frees[node]:
            if u != target:
                values.pop(u, None)
    return values.get(target)


def _poly_step(cost: Callable[[int], int], budget: list[int] | None) -> Callable:
    def step(node: int, terms: list[tuple[int, Poly]]) -> Poly:
        offset, coeffs = _poly_sum(terms)
        if budget is not None and (len(terms) > 1 or terms[0][0] != 1):
            top = max(coeffs).bit_length()
            budget[0] -= len(coeffs) * (1 + top // 60)
            if budget[0] < 0 or top > EXACT_BITS:
                raise Inexact
        return offset + cost(node), coeffs
    return step


def path_polynomial(graph: nx.DiGraph, cost: Callable[[int], int], source: int | None = None,
                    target: int | None = None) -> dict[int, int]:
    """``{k: number of paths from source to target whose nodes' costs sum to k}``.

    The source's own cost is not counted, the target's is. Paths are counted with
    multiplicity by edge ports. Empty if no path exists. Exact, so its cost grows
    with merges x distinct sums x digits: :func:`path_stats` bounds it.

    >>> from resdsl.graph import OpEdge, set_edge
    >>> g = nx.DiGraph()
    >>> for source, target, ports in [(0, 1, (0,)), (1, 2, (0, 1)), (0, 2, (2,))]:
    ...     set_edge(g, source, target, OpEdge("data", (4,), ports))
    >>> path_polynomial(g, lambda n: 1 if n == 1 else 0, 0, 2)
    {0: 1, 1: 2}
    """
    source = graph.graph["input"] if source is None else source
    target = graph.graph["output"] if target is None else target
    poly = fold(as_dag(graph), source, target, (0, [1]), _poly_step(cost, None))
    return _poly_dict(poly) if poly is not None else {}


@dataclass(frozen=True)
class Moments:
    """A path distribution summarised: log2 of the number of paths, the mean and
    variance of the counted nodes per path, and the exact least and most."""

    log2_count: float
    mean: float
    var: float
    low: int
    high: int


def _moments_step(cost: Callable[[int], int], work: list[float] | None = None) -> Callable:
    """Carry moments; add to ``work`` what the exact polynomial's merges would cost (at
    most: spread x words of the count), to decide beforehand whether to compute it."""
    def step(node: int, terms: list[tuple[int, Moments]]) -> Moments:
        c = cost(node)
        if len(terms) == 1 and terms[0][0] == 1:
            m = terms[0][1]
            if not c:
                return m  # most ops: the chain shares one summary
            return Moments(m.log2_count, m.mean + c, m.var, m.low + c, m.high + c)
        logs = [m.log2_count + math.log2(times) for times, m in terms]
        top = max(logs)
        weights = [2.0 ** (x - top) for x in logs]
        total = sum(weights)
        mean = sum(w * m.mean for w, (_, m) in zip(weights, terms)) / total
        var = sum(w * (m.var + (m.mean - mean) ** 2) for w, (_, m) in zip(weights, terms)) / total
        merged = Moments(top + math.log2(total), mean + c, var,
                         min(m.low for _, m in terms) + c, max(m.high for _, m in terms) + c)
        if work is not None:
            work[0] += (merged.high - merged.low + 1) * (1 + merged.log2_count // 60)
        return merged
    return step


def path_moments(graph: "nx.DiGraph | Dag", cost: Callable[[int], int], source: int | None = None,
                 target: int | None = None) -> Moments | None:
    """The moments of :func:`path_polynomial`'s distribution in O(edges), in floats
    (log space for the count, so 2**1000000 paths are no harder than 2); None if no path."""
    dag = as_dag(graph)
    source = dag.graph.graph["input"] if source is None else source
    target = dag.graph.graph["output"] if target is None else target
    return fold(dag, source, target, Moments(0.0, 0.0, 0.0, 0, 0), _moments_step(cost))


def count_step(node: int, terms: list[tuple[int, int]]) -> int:
    total = terms[0][1] if len(terms) == 1 and terms[0][0] == 1 else sum(t * c for t, c in terms)
    if total.bit_length() > EXACT_BITS:
        raise Inexact
    return total


def distribution(dag: Dag, cost: Callable[[int], int], source: int,
                  target: int) -> tuple[dict[int, int], Moments | None]:
    """The exact distribution when its cost, bounded beforehand from the moments (O(edges)),
    fits the report's budget; else the moments."""
    work = [0.0]
    moments = fold(dag, source, target, Moments(0.0, 0.0, 0.0, 0, 0), _moments_step(cost, work))
    if moments is None:
        return {}, None
    if work[0] <= dag.budget[0] and moments.log2_count <= EXACT_BITS:
        try:
            poly = fold(dag, source, target, (0, [1]), _poly_step(cost, dag.budget))
            return _poly_dict(poly), None
        except Inexact:  # the bound is an upper bound: not reached, kept as a guard
            pass
    return {}, moments


def min_max(dag: Dag, cost: Callable[[int], int], source: int, target: int) -> tuple[int, int]:
    def step(node: int, terms: list[tuple[int, tuple[int, int]]]) -> tuple[int, int]:
        c = cost(node)
        return min(v[0] for _, v in terms) + c, max(v[1] for _, v in terms) + c

    return fold(dag, source, target, (0, 0), step) or (0, 0)
