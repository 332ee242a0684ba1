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
from ..graph import containers, op_node, residual_units, top_level_groups

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


class _Gate(torch.autograd.Function):
    """The identity forward; backward scales the gradient by ``weights[index]``, read
    when the backward pass runs, so one forward pass serves many routings."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weights: list[float], index: int) -> torch.Tensor:
        ctx.weights, ctx.index = weights, index
        return x.clone()  # a new tensor: the generated forward may add to its inputs in place

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.weights[ctx.index], None, None


class Router:
    """Which branch of each residual unit the backward pass crosses.

    ``route(None)``: both (the ordinary gradient); ``route(through_body)``: unit ``i``
    passes the gradient through its body only where ``through_body[i]``, else through
    its shortcut only, so exactly one path of length ``sum(through_body)`` carries it.
    """

    def __init__(self, count: int):
        self.body = [1.0] * count
        self.skip = [1.0] * count

    def route(self, through_body: Sequence[bool] | None) -> None:
        if through_body is not None and len(through_body) != len(self.body):
            raise ValueError(f"{len(through_body)} choices for {len(self.body)} residual units")
        for i in range(len(self.body)):
            body = True if through_body is None else bool(through_body[i])
            skip = True if through_body is None else not through_body[i]
            self.body[i], self.skip[i] = float(body), float(skip)


@contextmanager
def routed(model: torch.nn.Module, graph: "nx.DiGraph", units: Sequence) -> Iterator[Router]:
    """Gate the backward pass of each residual unit's two branches (Veit et al. 2016,
    section 6: the gradient through one path); the forward pass is unchanged.

    Like :func:`dropped`, forward hooks on the built module: a pre-hook on the unit's
    block replaces its input ``x`` by a gated copy that the shortcut reads, and a
    pre-hook on the body's first op gives the body the original ``x`` through a
    second gate. A unit without a shortcut, or whose body is not entered by one
    submodule of its own block, cannot be routed: ``ValueError``.

    >>> import resdsl
    >>> from resdsl.graph import residual_units
    >>> net = resdsl.loads('''
    ... network two:
    ...     input x: [4, 8, 8]
    ...     block unit:
    ...         residual:
    ...             conv 3x3, 4
    ...     units: stage unit x 2
    ... ''')
    >>> model = net.build()
    >>> x = torch.randn(2, 4, 8, 8, requires_grad=True)
    >>> with routed(model, net.graph, residual_units(net.graph)) as router:
    ...     loss = model(x).sum()
    ...     router.route([False, False])  # both shortcuts: the identity path
    ...     (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
    >>> bool((grad == 1).all())
    True
    """
    modules = dict(model.named_modules())
    router = Router(len(units))
    handles = []
    try:
        for index, unit in enumerate(units):
            block, entry = _routing_modules(modules, graph, unit)
            stash: dict[str, torch.Tensor] = {}

            def on_block(_m, inputs, stash=stash, index=index):
                stash["x"] = inputs[0]
                return (_Gate.apply(inputs[0], router.skip, index),) + tuple(inputs[1:])

            def on_entry(_m, inputs, stash=stash, index=index):
                return (_Gate.apply(stash.pop("x"), router.body, index),) + tuple(inputs[1:])

            handles.append(block.register_forward_pre_hook(on_block))
            handles.append(entry.register_forward_pre_hook(on_entry))
        yield router
    finally:
        for handle in handles:
            handle.remove()


def _routing_modules(modules: dict[str, torch.nn.Module], graph: "nx.DiGraph",
                     unit) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The unit's block (whose input is the unit's) and the one op that reads it in the body."""
    where = op_node(graph, unit.merge).module
    if unit.shortcut == "none":
        raise ValueError(f"unit at {where} has no shortcut: it has one path, nothing to route")
    box = containers(graph).get(unit.container)
    readers = [s for s in graph.successors(unit.input) if unit.first <= s <= unit.body_output]
    first = op_node(graph, unit.first)
    if (box is None or box.kind == "network" or box.input != unit.input or unit.container not in modules
            or readers != [unit.first] or first.module not in modules or first.inputs[:1] != (unit.input,)):
        raise ValueError(f"unit at {where}: its body is not entered by one submodule of its own "
                         "block, so its branches cannot be told apart in the backward pass")
    return modules[unit.container], modules[first.module]
