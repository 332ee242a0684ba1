"""Probes of a freshly built network: is it the identity, and do gradients reach the stem?

>>> import resdsl
>>> net = resdsl.loads('''
... network tiny:
...     defaults conv(bias=false)
...     input x: [4, 8, 8]
...     residual:
...         conv 3x3, 4
...         bn: batchnorm
... ''')
>>> [round(r.ratio, 6) for r in init_ratios(net, zero_init_residual=True)]
[0.0]
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

from ..backends.torch import check_memory, observe, owner_module
from ..graph import op_node, residual_units, top_level_groups

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from ..api import Net


@contextmanager
def capture(model: torch.nn.Module, graph: "nx.DiGraph", nodes: Sequence[int],
            x: torch.Tensor) -> Iterator[dict[int, torch.Tensor]]:
    """Record (a copy of) the tensor of each of ``nodes`` during a forward pass.

    Copies, because the generated ``forward`` adds shortcuts and applies relu in
    place. The graph's input is ``x`` itself.
    """
    values: dict[int, torch.Tensor] = {}
    if graph.graph["input"] in nodes:
        values[graph.graph["input"]] = x
    with observe(model, graph, nodes, lambda node, t: values.__setitem__(node, t.detach().clone())) as seen:
        hidden = set(nodes) - seen - {graph.graph["input"]}
        if hidden:  # pragma: no cover - the probes ask for merges and block ends, all seen
            raise ValueError(f"cannot observe {op_node(graph, min(hidden)).module}")
        yield values


def shortcut_node(graph: "nx.DiGraph", unit) -> int | None:
    """The node whose tensor a plain unit can be replaced by (its input, when the
    shape is kept); for a unit with a shortcut, its merge."""
    if unit.shortcut == "none":
        same = op_node(graph, unit.input).shape == op_node(graph, unit.merge).shape
        return unit.input if same else None
    return unit.merge


@dataclass(frozen=True)
class InitRatio:
    """||H(x) - s(x)|| / ||s(x)|| for one residual unit: H its output, s its shortcut
    (the identity for identity and plain units), so 0 means the unit is the identity."""

    unit: str  # module path of the merge (or of the body's last op, for a plain unit)
    shortcut: str
    ratio: float


def random_batch(net: "Net", batch: int, seed: int) -> torch.Tensor:
    return net.sample_input(batch, seed=seed)  # token ids for an int input


def init_ratios(net: "Net", *, zero_init_residual: bool, batch: int = 8, seed: int = 0) -> list[InitRatio]:
    """Per residual unit, how far it is from the identity at initialisation.

    Measured in training mode (batch statistics, as in the first step of training)
    on a random normal batch; weights from ``torch.manual_seed(seed)``. With a
    shortcut, ``s(x) = H(x) - scale * F(x)`` (F: the body's output), so the ratio is
    ``||scale * F(x)|| / ||s(x)||``; for a plain unit that keeps the shape it is
    ``||F(x) - x|| / ||x||``.
    """
    graph = net.graph
    check_memory(net, batch, training=True)  # before allocating: a clear error, not an OOM kill
    torch.manual_seed(seed)
    model = net.build(zero_init_residual=zero_init_residual).train()
    x = random_batch(net, batch, seed)
    units = [u for u in residual_units(graph) if shortcut_node(graph, u) is not None]
    nodes = [n for u in units for n in (u.merge, u.body_output, u.input)]
    with torch.no_grad(), capture(model, graph, nodes, x) as values:
        model(x)
    rows = []
    for unit in units:
        body = values[unit.body_output]
        if unit.shortcut == "none":
            deviation, reference = body - values[unit.input], values[unit.input]
        else:
            deviation = body * op_node(graph, unit.merge).args.get("scale", 1.0)
            reference = values[unit.merge] - deviation
        ratio = (torch.linalg.vector_norm(deviation) / torch.linalg.vector_norm(reference)).item()
        rows.append(InitRatio(op_node(graph, unit.merge).module, unit.shortcut, ratio))
    return rows


def stage_gradients(net: "Net", *, batch: int = 8, seed: int = 0,
                    train: bool = True) -> list[tuple[str, float]]:
    """Norm of the loss gradient over each top-level group's parameters, at init.

    The loss is ``<output, r> / batch`` with ``r`` a fixed random normal tensor: the
    backward pass starts from the same random gradient for every network compared,
    whatever its output's scale, so the norms show only how the gradient travels.
    ``train=False`` runs batchnorm on its running statistics, which at init are
    the identity: the network as if it had no normalization.
    """
    check_memory(net, batch, training=True)
    torch.manual_seed(seed)
    model = net.build().train(train)
    x = random_batch(net, batch, seed)
    out = model(x)
    direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
    ((out * direction).sum() / batch).backward()
    rows = []
    modules = dict(model.named_children())
    for name, _ in top_level_groups(net.graph):
        if name not in modules:  # a merge written inline in forward: no parameters
            continue
        grads = [p.grad for p in modules[name].parameters() if p.grad is not None]
        if grads:
            rows.append((name, torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g) for g in grads])).item()))
    return rows


@dataclass(frozen=True)
class GradientRow:
    setting: str  # e.g. "n=9"
    plain: bool
    depth: int  # weight layers on the longest path
    norms: list[tuple[str, float]]


def gradient_sweep(load: Callable[..., "Net"], name: str | None, values: Sequence[str],
                   *, batch: int = 8, seed: int = 0, train: bool = True) -> list[GradientRow]:
    """Stage gradient norms of the residual network and its plain twin, per setting.

    ``load(plain=..., **{name: value})`` loads one network; without ``name`` the
    spec is measured as given.
    """
    from .report import path_stats

    rows = []
    for value in values if name else [None]:
        override = {name: value} if name else {}
        for plain in (False, True):
            net = load(plain=plain, **override)
            depth = path_stats(net.graph).max_length or 0
            rows.append(GradientRow(f"{name}={value}" if name else net.name, plain, depth,
                                    stage_gradients(net, batch=batch, seed=seed, train=train)))
    return rows


def render_init(with_zero: list[InitRatio], without: list[InitRatio]) -> str:
    """A table: one row per unit, the ratio at default init and with zero_init_residual."""
    if not without:
        return "identity at init: no residual units"
    width = max(len(r.unit) for r in without)
    lines = ["identity at init: ||H(x) - s(x)|| / ||s(x)|| per residual unit (train mode, random batch)",
             f"  {'unit':<{width}}  {'shortcut':<10}  {'default':>9}  {'zero-init':>9}"]
    for a, b in zip(without, with_zero):
        lines.append(f"  {a.unit:<{width}}  {a.shortcut:<10}  {a.ratio:>9.4f}  {b.ratio:>9.4f}")
    return "\n".join(lines)


def render_gradients(rows: list[GradientRow], train: bool = True) -> str:
    """A table: one row per network, the gradient norm of each stage."""
    stages = [name for name, _ in rows[0].norms]
    head = f"  {'network':<12} {'twin':<8} {'depth':>5}  " + "  ".join(f"{s:>9}" for s in stages)
    mode = "batch statistics" if train else "batchnorm on running statistics (= no normalization at init)"
    lines = [f"gradient norm per stage at init (loss = <output, random>; {mode})", head]
    for row in rows:
        norms = dict(row.norms)
        cells = "  ".join(f"{norms[s]:>9.2e}" if s in norms else f"{'-':>9}" for s in stages)
        lines.append(f"  {row.setting:<12} {'plain' if row.plain else 'residual':<8} {row.depth:>5}  {cells}")
    return "\n".join(lines)


@contextmanager
def dropped(model: torch.nn.Module, graph: "nx.DiGraph", units: Sequence) -> Iterator[None]:
    """Remove residual units at test time.

    A unit with a shortcut keeps only the shortcut: its body's output is replaced
    by zeros, so ``H(x) = s(x)`` (``x`` for an identity unit, Veit et al. 2016). A
    plain unit that keeps the shape is replaced by the identity: its output
    becomes its input. A plain unit that changes the shape cannot be removed:
    ``ValueError``.
    """
    handles = []
    keep: list = []
    for unit in units:
        source = shortcut_node(graph, unit)
        if source is None:
            raise ValueError(f"unit at {op_node(graph, unit.merge).module} changes the shape "
                             "and has no shortcut: it cannot be dropped")
        owner = owner_module(model, graph, unit.body_output)
        if owner is None:  # pragma: no cover - bodies end in an op or a block
            raise ValueError(f"cannot reach the body of {op_node(graph, unit.merge).module}")
        if unit.shortcut != "none":
            handles.append(owner.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out)))
            continue
        context = capture(model, graph, [unit.input], torch.empty(0))
        values = context.__enter__()
        keep.append(context)
        if unit.input == graph.graph["input"]:  # the network's input: seen by a pre-hook
            handles.append(model.register_forward_pre_hook(
                lambda _m, inputs, values=values, n=unit.input: values.__setitem__(n, inputs[0])))
        handles.append(owner.register_forward_hook(
            lambda _m, _i, _o, values=values, n=unit.input: values[n]))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for context in keep:
            context.__exit__(None, None, None)
