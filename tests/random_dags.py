"""Random DAGs with random ports and node costs, and their path-length distribution by
brute force: the oracle the path-counting tests compare with."""

from __future__ import annotations

import random
from collections import Counter
from math import prod
from typing import Iterator

import networkx as nx

from resdsl.graph import OpEdge, op_edge, set_edge


def random_dag_cases(seed: int, count: int = 40) -> Iterator[tuple[nx.DiGraph, dict, int, int, Counter]]:
    """``(graph, costs, source, target, expected)``, ``expected`` counting every
    source-target path (with multiplicity by ports) by the sum of its nodes' costs
    (the source's own cost not counted)."""
    rng = random.Random(seed)
    for _ in range(count):
        size = rng.randint(2, 12)
        graph = nx.DiGraph()
        graph.add_nodes_from(range(size))
        for v in range(1, size):
            for u in rng.sample(range(v), rng.randint(1, min(3, v))):
                set_edge(graph, u, v, OpEdge("data", (), tuple(range(rng.randint(1, 2)))))
        costs = {n: rng.randint(0, 2) for n in graph}
        source = rng.randrange(size)
        target = rng.randrange(source, size)
        expected: Counter = Counter()
        for path in nx.all_simple_paths(graph, source, target) if source != target else [[source]]:
            times = prod(len(op_edge(graph, u, v).ports) for u, v in zip(path, path[1:]))
            expected[sum(costs[n] for n in path[1:])] += times
        yield graph, costs, source, target, expected
