"""The graph: the contract between the front end and every back end.

``net.graph`` is a :class:`networkx.DiGraph` whose nodes are integers in
creation order, which is a topological order. Node attributes:

=============  ===============================================================
``op``         catalogue name (``conv``, ``residual_add``, ``input``, ...)
``args``       resolved arguments, every default filled in (tuples for sizes)
``inputs``     ordered predecessor node ids (``concat`` is ``[current, label]``)
``in_shapes``  input shapes, without the batch dimension
``shape``      output shape, without the batch dimension
``module``     dotted submodule path (``layer2.0.conv1``); ``None`` for the input
``container``  dotted path of the module whose ``forward`` runs this node
``span``       :class:`~resdsl.errors.Span` of the statement that made it
``label``      the tensor label written in the spec, or ``None``
``params``     number of trainable parameters
``shortcut``   ``True`` for nodes on a residual's shortcut path
=============  ===============================================================

Edge attributes: ``kind`` (one of :data:`EDGE_KINDS`), ``shape`` (the tensor
carried) and ``ports`` (input positions of the target that it feeds).

Graph attributes: ``name``, ``input`` and ``output`` node ids, ``containers``
(path -> container record, see :class:`Container`) and ``residuals`` (one record
per residual unit).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import networkx as nx

from .errors import Span

EDGE_KINDS = (
    "data",
    "skip-identity",
    "skip-projection",
    "skip-zero-pad",
    "long-add",
    "long-mul",
    "long-concat",
)

@dataclass
class Container:
    """A module with its own ``forward``: the network, a block instance, a stage,
    a labelled residual, or a shortcut path (``downsample``)."""

    path: str
    kind: str  # network | block | stage | residual | shortcut
    span: Span
    input: int = -1  # node whose tensor enters the container
    output: int = -1  # node whose tensor leaves it
    block: str | None = None  # block definition name, for block instances
    args: dict[str, Any] = field(default_factory=dict)  # bound block parameters
    children: list[str] = field(default_factory=list)  # child container paths, in order


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
    return sum(data["params"] for _, data in graph.nodes(data=True))


def top_level_groups(graph: nx.DiGraph) -> list[tuple[str, list[int]]]:
    """Nodes grouped by their top-level submodule name (``conv1``, ``layer1``, ...).

    This is the grouping of the CLI's summary table: the stem's ops one by one,
    each stage as one row.
    """
    groups: dict[str, list[int]] = {}
    for node, data in graph.nodes(data=True):
        if data["module"] is None:
            continue
        groups.setdefault(data["module"].split(".", 1)[0], []).append(node)
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
