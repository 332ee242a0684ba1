"""Structural checks on the elaborated graph: a DAG, one input, one output,
every op contributing to the output, every edge's shape equal to its source's."""

from __future__ import annotations

import networkx as nx

from ..errors import ErrorList
from ..graph import op_edges, op_node, op_nodes
from ..ops import REGISTRY
from ..shapes import format_shape


def live_nodes(graph: nx.DiGraph, output: int) -> set[int]:
    """Nodes with a path to ``output``: one sweep in reverse creation (topological) order."""
    live = {output}
    for node in range(output, -1, -1):
        if node in live:
            live.update(op_node(graph, node).inputs)
    return live


def validate(graph: nx.DiGraph, errors: ErrorList) -> None:
    if graph.number_of_nodes() == 0:
        return
    # Node ids are creation order; an edge that goes forward in that order cannot
    # close a cycle, so one pass over the edges proves the graph is a DAG.
    backward = next(((u, v) for u, v in graph.edges if u >= v), None)
    if backward is not None:  # pragma: no cover - elaboration only adds forward edges
        errors.add(op_node(graph, backward[1]).span, "the network contains a cycle")
        return
    output = graph.graph["output"]
    # In-degree 0, without a view per node; learnable tensors (catalogue ``source``) are no input.
    sources = [data.id for data in op_nodes(graph) if not data.inputs and not REGISTRY[data.op].source]
    if sources != [graph.graph["input"]]:  # pragma: no cover - every other op consumes a tensor
        errors.add(op_node(graph, sources[-1]).span, "the network must have exactly one input")
    live = live_nodes(graph, output)
    reported = set()
    start = graph.graph["input"]  # the input declaration is no statement to report as unused
    for data in op_nodes(graph):
        node = data.id
        if node in live or node == start:
            continue
        if errors.full:  # a flood of dead branches: the rest would be dropped
            break
        # Report where a dead branch starts, once per statement, not each op after it.
        span = data.span
        key = id(data.stmt)  # the statement is shared by every instance of its block
        if key in reported or any(pred not in live for pred in graph.predecessors(node)):
            continue
        reported.add(key)
        errors.add(
            span,
            "the result of this statement never reaches the network's output",
            hint="use it (add, mul or concat its label later) or remove it; "
            "'from LABEL' switches the current tensor to another branch",
        )
    for source, target, edge in op_edges(graph):
        produced = op_node(graph, source).shape
        if edge.shape != produced:  # pragma: no cover - a bug in elaboration
            errors.add(op_node(graph, target).span,
                       f"internal: edge shape {format_shape(edge.shape)} != {format_shape(produced)}")
