"""The inference rewrite: what eval mode makes of a checked graph (no torch).

:func:`inference_plan` returns a copy of the graph that computes what the network
computes in eval mode, with less work, and the record of what it changed, which
``Net.fold`` applies to a training build's state dict. Every decision reads the
op catalogue (``resdsl/ops``), never an op's name:

- an op that is the identity in eval mode (``eval_identity``: dropout) is left out;
- arguments without effect in eval mode (``eval_args``: a residual's ``drop_path``,
  attention dropout) take their neutral value, so the code does not mention them;
- a norm that is a per-channel affine map in eval mode (``affine_eval``: batchnorm)
  folds into the weight layer right before it when that layer ``absorbs_after`` it
  (conv, linear over a flat input), else into the one right after it when that one
  ``absorbs_before`` it, which is exact only where nothing pads the layer's input
  (a 1x1 conv, pad 0, a linear): a zero-padded 3x3 conv would see 0 at the border
  where the norm gives its shift. The layer gains a bias; the norm's entries go.
- a network whose convolutions read 2-D (3-D) maps runs in ``channels_last``
  (``channels_last_3d``) memory format (``fast_channels_last``).

Only a pair inside one ``forward`` (one container, both on the same path) whose
first member feeds nothing else folds, so no other reader sees a changed tensor.
Module paths, and so the state-dict keys of what remains, do not change:
``nn.Sequential`` positions keep their numbers (``features.0.0``, ``features.0.2``).

>>> import resdsl
>>> net = resdsl.loads('''
... network n:
...     input x: [3, 8, 8]
...     conv1: conv 3x3, 4, bias=false
...     bn1: batchnorm
...     relu
...     drop: dropout 0.2
...     flatten
...     fc: linear 2
... ''')
>>> plan = inference_plan(net.graph)
>>> [(f.norm, f.layer, f.before) for f in plan.folds], plan.removed, plan.memory_format
([('bn1', 'conv1', False)], ('drop',), 'channels_last')
>>> sorted(op_node(plan.graph, n).op for n in plan.graph)
['conv', 'flatten', 'input', 'linear', 'relu']
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from ..graph import containers, op_edge, op_node, op_nodes, residual_units, set_edge, update_node
from ..ops import REGISTRY

#: The memory format of a network whose fast-in-channels-last ops read maps of this
#: rank (spatial dims + 1, without the batch).
MEMORY_FORMATS = {3: "channels_last", 4: "channels_last_3d"}


@dataclass(frozen=True)
class Fold:
    """One norm folded into a weight layer (module paths, as in the state dict)."""

    norm: str  # its entries (weight, bias, running_mean, running_var, ...) go away
    layer: str  # its weight is scaled and its bias set (created when it had none)
    before: bool  # the norm precedes the layer (scales its input channels), else follows it
    groups: int  # the layer's groups: input channels per group are its weight's dim 1
    eps: float  # the norm's eps
    bias: bool  # the layer had a bias in the training build


@dataclass(frozen=True)
class InferencePlan:
    """The rewritten graph and what changed (see :func:`inference_plan`)."""

    graph: nx.DiGraph
    folds: tuple[Fold, ...]
    removed: tuple[str, ...]  # modules left out (no state-dict entries: dropout)
    memory_format: str | None  # ``channels_last``, ``channels_last_3d`` or None
    # Arguments the rewrite set, per node: the code writes their values, not the spec's
    # expressions (a folded conv's ``bias``, a residual's ``drop_path``).
    rewritten: dict[int, frozenset[str]]


def inference_plan(graph: nx.DiGraph) -> InferencePlan:
    """The eval-mode rewrite of a checked ``graph`` (which is not changed)."""
    g = _copy(graph)
    rewritten: dict[int, set[str]] = {}
    removed = tuple(_remove_eval_identities(g))
    _neutral_args(g, rewritten)
    folds = tuple(_fold_norms(g, rewritten))
    return InferencePlan(g, folds, removed, _memory_format(g),
                         {node: frozenset(names) for node, names in sorted(rewritten.items())})


# -- the graph's copy: nodes are frozen, containers and units are copied -------------------
def _copy(graph: nx.DiGraph) -> nx.DiGraph:
    g = graph.copy()
    g.graph = dict(graph.graph)
    g.graph["containers"] = {path: replace(box, children=list(box.children))
                             for path, box in containers(graph).items()}
    g.graph["residuals"] = [copy(unit) for unit in residual_units(graph)]
    return g


def _bypass(g: nx.DiGraph, node: int) -> None:
    """Remove ``node`` (of one input): its readers read its input, and every container,
    unit and the graph that named it names its input."""
    data = op_node(g, node)
    (source,) = data.inputs
    for reader in sorted(g.successors(node)):
        edge = op_edge(g, node, reader)
        if g.has_edge(source, reader):  # it already read the source too: one edge, both ports
            edge = replace(edge, ports=tuple(sorted(op_edge(g, source, reader).ports + edge.ports)))
        update_node(g, reader, inputs=tuple(source if i == node else i for i in op_node(g, reader).inputs))
        set_edge(g, source, reader, edge)
    nxt = min(g.successors(node), default=None)
    g.remove_node(node)
    for box in containers(g).values():
        box.input = source if box.input == node else box.input
        box.output = source if box.output == node else box.output
    for unit in residual_units(g):
        for name in ("merge", "input", "body_output"):
            if getattr(unit, name) == node:
                setattr(unit, name, source)
        if unit.last_norm == node:
            unit.last_norm = None
        if unit.first == node:
            unit.first = nxt if nxt is not None else source
    for name in ("input", "output"):
        if g.graph.get(name) == node:
            g.graph[name] = source


def _alone(g: nx.DiGraph, data: Any) -> bool:
    """Whether ``data`` is the only submodule its container runs (removing it would leave
    an empty class)."""
    return not any(other.container == data.container and other.module and other.id != data.id
                   for other in op_nodes(g))


def _remove_eval_identities(g: nx.DiGraph) -> list[str]:
    removed = []
    for data in list(op_nodes(g)):
        if REGISTRY[data.op].eval_identity and len(data.inputs) == 1 and data.module and \
                g.graph.get("output") != data.id and not _alone(g, data):
            _bypass(g, data.id)
            removed.append(data.module)
    return removed


def _neutral_args(g: nx.DiGraph, rewritten: dict[int, set[str]]) -> None:
    for data in list(op_nodes(g)):
        neutral = {name: value for name, value in REGISTRY[data.op].eval_args if name in data.args}
        if neutral:
            rewritten.setdefault(data.id, set()).update(neutral)
        if any(data.args[name] != value for name, value in neutral.items()):
            update_node(g, data.id, args={**data.args, **neutral})


# -- norms into weight layers --------------------------------------------------------------
def _tied(g: nx.DiGraph) -> set[str]:
    """Labels of layers whose weight another layer shares (a fold would change both)."""
    found = set()
    for data in op_nodes(g):
        for spec in REGISTRY[data.op].args:
            if spec.kind == "tie" and data.args.get(spec.name):
                found.add(data.args[spec.name])
    return found


def _absorbs(g: nx.DiGraph, layer: Any, norm: Any, side: str, tied: set[str]) -> bool:
    spec = REGISTRY[layer.op]
    rule = getattr(spec, side)
    return rule is not None and spec.arg("bias") is not None and len(layer.inputs) == 1 and \
        layer.module is not None and layer.container == norm.container and \
        layer.shortcut == norm.shortcut and layer.label not in tied and \
        rule(layer.in_shapes[0], layer.args)


def _fold_norms(g: nx.DiGraph, rewritten: dict[int, set[str]]) -> list[Fold]:
    tied = _tied(g) - {None}
    folds = []
    for norm in list(op_nodes(g)):
        if not REGISTRY[norm.op].affine_eval or len(norm.inputs) != 1 or not norm.module:
            continue
        before = op_node(g, norm.inputs[0])
        after = [op_node(g, n) for n in g.successors(norm.id)]
        if g.out_degree(before.id) == 1 and _absorbs(g, before, norm, "absorbs_after", tied):
            layer, is_before = before, False
        elif len(after) == 1 and g.graph.get("output") != norm.id and \
                _absorbs(g, after[0], norm, "absorbs_before", tied):
            layer, is_before = after[0], True
        else:
            continue
        folds.append(Fold(norm.module, layer.module, is_before, int(layer.args.get("groups", 1)),
                          float(norm.args["eps"]), bool(layer.args["bias"])))
        args = {**layer.args, "bias": True}
        update_node(g, layer.id, args=args, params=REGISTRY[layer.op].params(layer.in_shapes[0], args))
        rewritten.setdefault(layer.id, set()).add("bias")
        _bypass(g, norm.id)
    return folds


def _memory_format(g: nx.DiGraph) -> str | None:
    rank = len(op_node(g, g.graph["input"]).shape)
    if rank not in MEMORY_FORMATS:
        return None
    fast = any(REGISTRY[d.op].fast_channels_last and d.inputs and len(d.in_shapes[0]) == rank
               for d in op_nodes(g))
    return MEMORY_FORMATS[rank] if fast else None
