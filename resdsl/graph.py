"""The graph: the contract between the front end and every back end.

``net.graph`` is a :class:`networkx.DiGraph` whose nodes are integers in
creation order, which is a topological order. networkx holds the structure; each
node's data is one :class:`OpNode` (a frozen, slotted dataclass whose fields are
the schema), stored as the node's only attribute and read with :func:`op_node`
(one node) or :func:`op_nodes` (all, in id order). Nothing reads node data by a
string key; the one change after creation (an explicit shortcut's nodes get
``shortcut=True``) goes through :func:`update_node`.

Each node carries the IR statement that made it (``stmt``), so a back end finds
the statement behind a node without looking it up by position. Statements are
shared: every instance of a block points at the same statements of its body.

Edge data is one :class:`OpEdge`, the edge's only attribute, read with
:func:`op_edge`: ``kind`` (one of :data:`EDGE_KINDS`), ``shape`` (the tensor
carried) and ``ports`` (input positions of the target that it feeds).

Graph attributes: ``name``, ``params`` (the network's parameter values),
``input`` and ``output`` node ids, ``containers`` (path -> :class:`Container`)
and ``residuals`` (one :class:`ResidualUnit` per residual statement instance).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator, Union

import networkx as nx

from . import ir
from .errors import Span
from .shapes import Shape

EDGE_KINDS = (
    "data",
    "skip-identity",
    "skip-projection",
    "skip-zero-pad",
    "long-add",
    "long-mul",
    "long-concat",
)

Made = Union[ir.Apply, ir.Residual, ir.Ref, ir.Input]  # the statements that make nodes


@dataclass(frozen=True, slots=True)
class OpNode:
    """One op of the network: what it computes, on what, where it lives, who wrote it."""

    id: int  # node id in the graph: creation order, a topological order
    op: str  # catalogue name (``conv``, ``residual_add``, ``input``, ...)
    args: dict[str, Any]  # resolved arguments, every default filled in (tuples for sizes)
    inputs: tuple[int, ...]  # ordered predecessor node ids (``concat`` is ``(current, label)``)
    in_shapes: tuple[Shape, ...]  # input shapes, without the batch dimension
    shape: Shape  # output shape, without the batch dimension (None only in a graph that failed)
    module: str | None  # dotted submodule path (``layer2.0.conv1``); ``None`` for the input
    container: str  # dotted path of the module whose ``forward`` runs this node
    span: Span  # where the statement that made it is written (for messages)
    stmt: Made  # the IR statement that made it: its identity, for back ends
    label: str | None = None  # the tensor label written in the spec
    params: int = 0  # number of trainable parameters
    shortcut: bool = False  # on a residual's shortcut path

    def __init__(self, id: int, op: str, args: dict[str, Any], inputs: tuple[int, ...],
                 in_shapes: tuple[Shape, ...], shape: Shape, module: str | None, container: str,
                 span: Span, stmt: Made, label: str | None = None, params: int = 0,
                 shortcut: bool = False) -> None:
        # Written out (dataclasses keeps it) because the one it writes for a frozen class
        # calls object.__setattr__ per field: adding a node was 40% slower (2 us an op).
        # This one stores through the slots' descriptors; a test checks it against the fields.
        s_id, s_op, s_args, s_inputs, s_in_shapes, s_shape, s_module, s_container, s_span, s_stmt, \
            s_label, s_params, s_shortcut = _NODE_SLOTS
        s_id(self, id)
        s_op(self, op)
        s_args(self, args)
        s_inputs(self, inputs)
        s_in_shapes(self, in_shapes)
        s_shape(self, shape)
        s_module(self, module)
        s_container(self, container)
        s_span(self, span)
        s_stmt(self, stmt)
        s_label(self, label)
        s_params(self, params)
        s_shortcut(self, shortcut)


_NODE_SLOTS = tuple(getattr(OpNode, f.name).__set__ for f in fields(OpNode))  # in field order


@dataclass(frozen=True, slots=True)
class OpEdge:
    """One tensor flowing from a node to a later one."""

    kind: str  # one of EDGE_KINDS
    shape: Shape  # the tensor carried, without the batch dimension
    ports: tuple[int, ...]  # input positions of the target that this tensor feeds


# networkx's attribute stores (``graph._node``, ``graph._adj``: what ``graph.nodes[n]``
# and ``graph.edges[u, v]`` read) are read directly: these run once per node or edge
# in every pass, and each view adds a call per read.
def op_node(graph: nx.DiGraph, node: int) -> OpNode:
    """The data of node ``node``."""
    return graph._node[node]["node"]


def op_nodes(graph: nx.DiGraph) -> Iterator[OpNode]:
    """Every node's data, in id (creation, topological) order."""
    for attrs in graph._node.values():
        yield attrs["node"]


def add_op_node(graph: nx.DiGraph, data: OpNode) -> None:
    """Add node ``data.id`` with its data (elaboration makes nodes in id order)."""
    graph.add_node(data.id, node=data)


def update_node(graph: nx.DiGraph, node: int, **changes: Any) -> OpNode:
    """Replace fields of a node's data (a new frozen object, stored in its place)."""
    attrs = graph._node[node]
    data = attrs["node"] = replace(attrs["node"], **changes)
    return data


def op_edge(graph: nx.DiGraph, source: int, target: int) -> OpEdge:
    """The data of edge ``source -> target``."""
    return graph._adj[source][target]["edge"]


def op_edges(graph: nx.DiGraph) -> Iterator[tuple[int, int, OpEdge]]:
    """Every edge with its data."""
    for source, target, data in graph.edges(data="edge"):
        yield source, target, data


def set_edge(graph: nx.DiGraph, source: int, target: int, data: OpEdge) -> None:
    """Add the edge, or replace its data."""
    graph.add_edge(source, target, edge=data)


@dataclass
class Container:
    """A module with its own ``forward``: the network, a block instance, a stage,
    a labelled residual, or a shortcut path (``downsample``)."""

    path: str
    kind: str  # network | block | stage | residual | shortcut | sequential
    span: Span
    input: int = -1  # node whose tensor enters the container
    output: int = -1  # node whose tensor leaves it
    block: str | None = None  # block definition name, for block instances
    args: dict[str, Any] = field(default_factory=dict)  # bound block parameters
    children: list[str] = field(default_factory=list)  # child container paths, in order
    stmt: ir.Apply | ir.Stage | ir.Residual | None = None  # the statement that made it (None: the network)
    order: tuple[str, ...] = ()  # ``order A, B``: these submodules are registered first, in this order


@dataclass
class ResidualUnit:
    """One ``residual`` statement after elaboration."""

    merge: int  # the residual_add node (or the body output, for shortcut=none)
    input: int  # node whose tensor enters the unit
    body_output: int
    shortcut: str  # identity | projection | zero-pad | none | explicit
    last_norm: int | None  # the body's last batchnorm (zeroed by zero_init_residual)
    container: str
    span: Span
    stmt: ir.Residual  # the residual statement (shared by every instance of its block)
    first: int = -1  # the body's first node (the body is first..body_output)
    shortcut_first: bool = False  # its shortcut is registered before its body (RegNet's proj)


def new_graph(name: str) -> nx.DiGraph:
    graph = nx.DiGraph(name=name)
    graph.graph["containers"] = {}
    graph.graph["residuals"] = []
    return graph


def containers(graph: nx.DiGraph) -> dict[str, Container]:
    return graph.graph["containers"]


def residual_units(graph: nx.DiGraph) -> list[ResidualUnit]:
    return graph.graph["residuals"]


def num_params(graph: nx.DiGraph) -> int:
    return sum(data.params for data in op_nodes(graph))


def top_level_groups(graph: nx.DiGraph) -> list[tuple[str, list[int]]]:
    """Nodes grouped by their top-level submodule name (``conv1``, ``layer1``, ...).

    This is the grouping of the CLI's summary table: the stem's ops one by one,
    each stage as one row.
    """
    groups: dict[str, list[int]] = {}
    for data in op_nodes(graph):
        if data.module is None:
            continue
        groups.setdefault(data.module.split(".", 1)[0], []).append(data.id)
    return list(groups.items())


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a graph is built or walked.

    Elaboration and the passes over a graph (analysis, drawing) allocate many small
    acyclic objects while the graph fills the heap, and each automatic collection
    rescans that heap: loading cifar_resnet n=2000 took 1.05 s with it and 0.66 s
    without; analyze on a 150,000-op network 70 us/op against 30. Nothing here makes
    cyclic garbage worth collecting early; the collector resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
