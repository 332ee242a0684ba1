"""Elaboration: IR -> flat graph with shapes.

Parameters and ``-D`` overrides are evaluated, ``defaults`` applied, blocks and
stages instantiated, residual shortcuts chosen from shapes, long skips resolved,
and every op's arguments and output shape checked before any tensor exists.
Problems are collected (one run reports every independent error) and raised
together as one :class:`~resdsl.errors.SpecError`.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from math import prod
from typing import Any, Iterable, Mapping

import networkx as nx

from . import ir
from .errors import ErrorList, Problem, Span, did_you_mean
from .expr import INT_LIMIT, Value, describe, evaluate, type_name
from .graph import Container, ResidualUnit, new_graph
from .ops import REGISTRY, OpError, bind, projection, signature_hint, user_ops
from .ops.merge import merge_shape
from .shapes import Shape, format_shape
from .vocab import SHORTCUT_POLICIES, STATEMENT_WORDS


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one spec can ask for; each hit is a located error."""

    max_nodes: int = 50_000  # elaborated ops: 10-25 us each, so about 1 s at the limit
    # Elaboration steps: every statement visited (weighted by the size of its expressions)
    # and every block, stage, residual or shortcut instance opened. Blocks with no op
    # make no node, so max_nodes alone never stops 2**40 empty instances.
    max_work: int = 200_000
    max_depth: int = 64  # nested block calls / residuals
    max_repeat: int = 100_000  # stage x N
    max_tensor_elements: int = 2**34  # per sample, any activation
    max_weight_elements: int = 2**32  # any single op's parameters
    max_file_bytes: int = 65_536  # spec source size: parsing costs ~6-8 us a byte, so ~0.5 s


class LimitProblem(Problem):
    """A limit crossed while elaborating: reported once, and elaboration stops."""


class _Full(Exception):
    """The diagnostic cap is reached: the spec fails anyway, so elaboration stops."""


@dataclass
class Tensor:
    node: int
    shape: Shape | None  # None after an error upstream: checks that need it are skipped
    origin: Span


@dataclass
class Scope:
    """A namespace for labels and submodule names: the network, a block instance,
    a labelled residual, or a shortcut path."""

    path: str  # module path prefix ("" at the root)
    container: str
    env: dict[str, Value]
    labels: dict[str, Tensor]
    reserved: set[str]
    used: dict[str, Span] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    sequential: bool = False  # shortcut paths name unlabelled statements 0, 1, 2 like nn.Sequential
    position: int = 0
    depth: int = 0
    notes: tuple[Any, ...] = ()  # str or _CallNote, formatted only when a problem is reported
    block_stack: tuple[str, ...] = ()

    def module_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


class _CallNote:
    """"in PATH = BLOCK(ARGS), used at FILE:LINE:COL", built only if a problem needs it
    (formatting it for every block instance cost more than the instance itself)."""

    __slots__ = ("path", "name", "bound", "span")

    def __init__(self, path: str, name: str, bound: Mapping[str, Value], span: Span):
        self.path, self.name, self.bound, self.span = path, name, bound, span

    def __str__(self) -> str:
        call = f"{self.name}({', '.join(describe(v) for v in self.bound.values())})"
        return f"in {self.path} = {call}, used at {self.span.where()}"


def _declared_labels(stmts: Iterable[ir.Stmt]) -> set[str]:
    """Labels in a namespace: its own statements and those of unlabelled residual bodies."""
    labels: set[str] = set()
    for stmt in stmts:
        if getattr(stmt, "label", None):
            labels.add(stmt.label)
        if isinstance(stmt, ir.Residual) and stmt.label is None:
            labels |= _declared_labels(stmt.body)
    return labels


class Elaborator:
    def __init__(
        self,
        network: ir.Network,
        blocks: Mapping[str, ir.Block],
        errors: ErrorList,
        overrides: Mapping[str, Any] | None = None,
        plain: bool = False,
        limits: Limits = Limits(),
        shortcut: str | None = None,
    ):
        self.network = network
        self.blocks = dict(blocks)
        self.errors = errors
        self.overrides = dict(overrides or {})
        # --plain is --shortcut none: every residual loses its skip (He et al.'s control network).
        self.forced_policy = "none" if plain else shortcut
        self.plain = self.forced_policy == "none"
        self.limits = limits
        self.graph = new_graph(network.name)
        self.nodes = 0
        self.ops = user_ops()
        self.resolved: dict[tuple, Any] = {}  # see resolve()
        self.work = 0  # elaboration steps, against limits.max_work
        self.costs: dict[int, int] = {}  # id(statement or block) -> its steps, see cost()
        self.labels_of: dict[int, set[str]] = {}  # id(body) -> _declared_labels(body)
        self.norms: list[int] = []  # zero-init norms (OpSpec.zero_init_norm) off any shortcut, in order
        self.reported: set[tuple] = set()  # keys of problems already reported (dedup before building)
        self.failures = 0  # problems met, repeats included: a failed stage instance ends its stage
        self.hints: dict[str, str | None] = {}  # unknown name -> did-you-mean hint

    # ---- entry point -----------------------------------------------------------
    def run(self) -> nx.DiGraph:
        net = self.network
        env = self.network_params()
        self.graph.graph["params"] = dict(env)
        in_shape = self.input_shape(net.input, env)
        root = Scope(path="", container="", env=env, labels={},
                     reserved=_declared_labels(net.body))
        self.graph.graph["containers"][""] = Container("", "network", net.span)
        x = self.add_node("input", {}, [], [], in_shape, root, net.input.span, module=None,
                          label=net.input.name)
        root.labels[net.input.name] = x
        if net.input.name != "input":
            root.labels["input"] = x
        self.graph.graph["input"] = x.node
        self.check_block_names()
        out = self.body(net.body, root, x, {})
        self.graph.graph["output"] = out.node
        self.graph.graph["containers"][""].input = x.node
        self.graph.graph["containers"][""].output = out.node
        return self.graph

    # ---- parameters ---------------------------------------------------------------
    def network_params(self) -> dict[str, Value]:
        net = self.network
        declared = {p.name: p for p in net.params}
        for name in self.overrides:
            if name not in declared:
                hint = did_you_mean(name, declared) or (
                    f"network '{net.name}' has no parameters" if not declared else None
                )
                self.error(net.span, f"unknown parameter '{name}' for network '{net.name}'",
                           hint=hint)
        env: dict[str, Value] = {}
        for param in net.params:
            value = None
            if param.name in self.overrides:
                value = self.coerce_override(param, self.overrides[param.name])
            if value is None and param.default is not None:  # also after a bad override, to avoid cascades
                value = self.eval_param_default(param, env)
            elif value is None and param.name not in self.overrides:
                self.error(param.span, f"network parameter '{param.name}' has no default and no value",
                           hint=f"give it a default, or pass -D {param.name}=VALUE")
            if value is not None:
                env[param.name] = value
        return env

    def coerce_override(self, param: ir.Param, value: Any) -> Value | None:
        value = _plain(value)  # API values may be subclasses with their own repr, str, eq...
        text = value
        if isinstance(value, str):
            value = _parse_literal(value)
        converted = _convert(value, param.type)
        if converted is None:
            self.error(
                param.span,
                f"override {param.name}={_shown(text)} is not a valid {param.type}",
                hint=f"'{param.name}' is declared as {param.type}",
            )
        elif not isinstance(converted, bool) and (converted != converted or abs(converted) > INT_LIMIT):
            # Overrides obey the bounds of spec literals (-D n=1e400 or n=10**5000).
            self.error(
                param.span,
                f"override {param.name}={_shown(text)} is out of range (limit is +-2**31)",
                hint="use smaller numbers",
            )
            return None
        return converted

    def eval_param_default(self, param: ir.Param, env: dict[str, Value]) -> Value | None:
        try:
            value = evaluate(param.default, env)
        except Problem as problem:
            self.report(problem)
            return None
        converted = _convert(value, param.type)
        if converted is None:
            self.error(param.default.span,
                       f"default of '{param.name}' is {describe(value)}, not a {param.type}",
                       hint=f"give '{param.name}' a {param.type} default")
        return converted

    def input_shape(self, decl: ir.Input, env: Mapping[str, Value]) -> Shape | None:
        dims = []
        for expr in decl.shape:
            try:
                value = evaluate(expr, env)
            except Problem as problem:
                self.report(problem)
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self.error(expr.span, f"input size must be a positive integer, not {describe(value)}",
                           hint="write the shape without the batch dimension, e.g. [3, 224, 224]")
                return None
            dims.append(value)
        if not 1 <= len(dims) <= 4:
            self.error(decl.span, f"input rank must be 1 to 4 ([C], [C, L], [C, H, W] or [C, D, H, W]), "
                       f"got {len(dims)}", hint="give the shape without the batch dimension")
            return None
        return self.checked_size(tuple(dims), decl.span)

    def checked_size(self, shape: Shape | None, span: Span) -> Shape | None:
        if shape is not None and prod(shape) > self.limits.max_tensor_elements:
            self.error(span, f"tensor {format_shape(shape)} has {prod(shape):,} elements per sample, "
                       f"over the limit of {self.limits.max_tensor_elements:,}",
                       hint="use smaller sizes")
            return None
        return shape

    def check_block_names(self) -> None:
        for name, block in self.blocks.items():
            if name in self.ops or name in STATEMENT_WORDS:
                self.error(block.span, f"block '{name}' has the name of a built-in op",
                           hint=f"rename the block, e.g. '{name}_block'")

    # ---- graph construction -------------------------------------------------------
    def add_node(
        self,
        op: str,
        args: dict,
        inputs: list[Tensor],
        edge_kinds: list[str],
        shape: Shape | None,
        scope: Scope,
        span: Span,
        module: str | None,
        label: str | None = None,
        params: int = 0,
        shortcut: bool = False,
        container: str | None = None,
    ) -> Tensor:
        if self.nodes >= self.limits.max_nodes:
            raise LimitProblem(span, f"the network has more than {self.limits.max_nodes:,} ops",
                               hint="reduce the depth, or raise the limit (Limits.max_nodes)",
                               notes=scope.notes)
        node = self.nodes
        self.nodes += 1
        if not shortcut and REGISTRY[op].zero_init_norm:
            self.norms.append(node)
        self.graph.add_node(
            node, op=op, args=args, inputs=tuple(t.node for t in inputs),
            in_shapes=tuple(t.shape for t in inputs), shape=shape, module=module,
            container=scope.container if container is None else container,
            span=span, label=label, params=params, shortcut=shortcut,
        )
        for port, (tensor, kind) in enumerate(zip(inputs, edge_kinds)):
            if self.graph.has_edge(tensor.node, node):
                self.graph.edges[tensor.node, node]["ports"] += (port,)
            else:
                self.graph.add_edge(tensor.node, node, kind=kind, shape=tensor.shape, ports=(port,))
        return Tensor(node, shape, span)

    def module_name(self, scope: Scope, label: str | None, base: str, span: Span) -> str:
        """The submodule name of a statement: its label, or a deterministic automatic name."""
        if label is not None:
            name = label
        elif scope.sequential:
            name = str(scope.position)
        else:
            index = scope.counters.get(base, 0)
            while f"{base}_{index}" in scope.reserved or f"{base}_{index}" in scope.used:
                index += 1
            scope.counters[base] = index + 1
            name = f"{base}_{index}"
        if name in scope.used:
            first = scope.used[name]
            raise Problem(span, f"'{name}' is already used as a name in this scope (line {first.line})",
                          hint="labels must be unique within a block instance")
        scope.used[name] = span
        return name

    def set_label(self, scope: Scope, label: str | None, tensor: Tensor, span: Span) -> None:
        if label is not None:
            scope.labels[label] = tensor

    def report(self, problem: Problem, scope: Scope | None = None) -> None:
        """Record a problem; the same one met again (a block body in every instance) is
        skipped before its diagnostic is built, and a full list ends elaboration."""
        self.failures += 1
        span = problem.span
        key = (span.file, span.line, span.column, problem.message) if span is not None else None
        if key is not None and key in self.reported:
            return
        if key is not None:
            self.reported.add(key)
        notes = tuple(map(str, problem.notes + (scope.notes if scope is not None else ())))
        self.errors.add(problem.span, problem.message, problem.hint, notes)
        if self.errors.full:
            raise _Full

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.report(Problem(span, message, hint))

    # ---- work ---------------------------------------------------------------------------
    def count(self, steps: int, span: Span, scope: Scope) -> None:
        """Count elaboration steps; crossing max_work stops elaboration at ``span``."""
        self.work += steps
        if self.work > self.limits.max_work:
            raise LimitProblem(
                span, f"elaborating the network takes more than {self.limits.max_work:,} steps "
                "(statements, and block, stage, residual and shortcut instances)",
                hint="blocks that use other blocks several times multiply; use fewer repeats, "
                     "or raise the limit (Limits.max_work)",
                notes=scope.notes)

    def cost(self, node: Any) -> int:
        """Steps for visiting a statement (or binding a block): 1 plus the size of the
        expressions evaluated there, so a huge argument list costs what it weighs."""
        key = id(node)
        cached = self.costs.get(key)
        if cached is None:
            cached = 1 + _expression_size(node)
            self.costs[key] = cached
        return cached

    def declared_labels(self, stmts: tuple[ir.Stmt, ...]) -> set[str]:
        key = id(stmts)
        labels = self.labels_of.get(key)
        if labels is None:
            labels = self.labels_of[key] = _declared_labels(stmts)
        return labels

    def suggest(self, name: str) -> str | None:
        """did_you_mean over every op and block, once per unknown name."""
        if name not in self.hints:
            self.hints[name] = did_you_mean(name, [*self.ops, *self.blocks])
        return self.hints[name]

    # ---- statements -----------------------------------------------------------------
    def body(self, stmts: Iterable[ir.Stmt], scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        current = x
        for stmt in stmts:
            self.count(self.cost(stmt), stmt.span, scope)
            if self.errors.full:
                raise _Full
            if isinstance(stmt, ir.Defaults):
                defaults = self.defaults(stmt, scope, defaults)
                continue
            try:
                current = self.statement(stmt, scope, current, defaults)
            except LimitProblem:
                raise
            except Problem as problem:
                self.report(problem, scope)
                current = Tensor(current.node, None, stmt.span)
                if getattr(stmt, "label", None):
                    scope.labels[stmt.label] = current
            scope.position += 1
        return current

    def statement(self, stmt: ir.Stmt, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        if isinstance(stmt, ir.Apply):
            if stmt.name in self.ops:
                return self.apply_op(stmt, scope, x, defaults)
            if stmt.name in self.blocks:
                return self.apply_block(stmt.name, stmt.args, stmt.label, stmt, scope, x, defaults)
            raise Problem(stmt.name_span, f"unknown op or block '{stmt.name}'",
                          hint=self.suggest(stmt.name))
        if isinstance(stmt, ir.Stage):
            return self.stage(stmt, scope, x, defaults)
        if isinstance(stmt, ir.Residual):
            return self.residual(stmt, scope, x, defaults)
        if isinstance(stmt, ir.Ref):
            return self.ref(stmt, scope, x)
        raise Problem(stmt.span, f"unsupported statement {type(stmt).__name__}")  # pragma: no cover

    def defaults(self, stmt: ir.Defaults, scope: Scope, defaults: dict) -> dict:
        op = self.ops.get(stmt.op)
        if op is None:
            self.error(stmt.name_span, f"defaults for unknown op '{stmt.op}'",
                       hint=did_you_mean(stmt.op, self.ops))
            return defaults
        values = dict(defaults.get(stmt.op, {}))
        for arg in stmt.args:
            if arg.name is None:
                self.error(arg.span, "defaults take keyword arguments only",
                           hint=f"write e.g. defaults {stmt.op}(name=value)")
                continue
            if op.arg(arg.name) is None:
                self.error(arg.span, f"{stmt.op} has no argument '{arg.name}'",
                           hint=did_you_mean(arg.name, [a.name for a in op.args]))
                continue
            try:
                values[arg.name] = evaluate(arg.value, scope.env)
            except Problem as problem:
                self.report(problem, scope)
        return {**defaults, stmt.op: values}

    def eval_args(self, args: Iterable[ir.Arg], env: Mapping[str, Value]):
        positional: list[Value] = []
        keywords: dict[str, Value] = {}
        spans: dict[str, Span] = {}
        for arg in args:
            value = evaluate(arg.value, env)
            if arg.name is None:
                spans[f"#{len(positional)}"] = arg.span
                positional.append(value)
            else:
                spans[arg.name] = arg.span
                keywords[arg.name] = value
        return positional, keywords, spans

    def apply_op(self, stmt: ir.Apply, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        op = self.ops[stmt.name]
        positional, keywords, spans = self.eval_args(stmt.args, scope.env)
        name = self.module_name(scope, stmt.label, stmt.name, stmt.span)
        shape = params = None
        args: dict = {}
        if x.shape is None:  # unknown after an earlier error: still check the arguments themselves
            try:
                bind(op, positional, keywords, defaults.get(op.name, {}), None)
            except OpError as err:
                raise Problem(spans.get(err.arg or "", stmt.span), f"{op.name}: {err.message}",
                              hint=err.hint or signature_hint(op)) from None
        else:
            if len(x.shape) < op.min_rank:
                raise Problem(stmt.name_span,
                              f"{op.name} needs a spatial input ([C, L], [C, H, W] or [C, D, H, W]), "
                              f"but its input is {format_shape(x.shape)}",
                              hint="spatial ops cannot follow flatten or a flat input")
            try:
                args, shape, params = self.resolve(op, positional, keywords, defaults, x.shape)
            except OpError as err:
                span = spans.get(err.arg or "", stmt.span)
                raise Problem(span, f"{op.name}: {err.message}", hint=err.hint or signature_hint(op),
                              notes=(f"its input is {format_shape(x.shape)}",)) from None
            if params > self.limits.max_weight_elements:
                raise Problem(stmt.span, f"{op.name} would have {params:,} parameters, over the limit "
                              f"of {self.limits.max_weight_elements:,}", hint="use smaller sizes")
            shape = self.checked_size(shape, stmt.span)
        out = self.add_node(op.name, args, [x], ["data"], shape, scope, stmt.span,
                            module=scope.module_path(name), label=stmt.label, params=params or 0)
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def resolve(self, op, positional: list, keywords: dict, defaults: dict, in_shape: Shape):
        """Bind and check arguments, infer the shape and count parameters, once per distinct case.

        Deep networks repeat a few op configurations thousands of times (ResNet-1202
        has 3 distinct 3x3 convs among 1,200), so the result is cached. Keys carry each
        value's type, so ``true`` and ``1`` never share an entry.
        """
        op_defaults = defaults.get(op.name, {})
        key = (op.name, in_shape, _typed(positional), _typed(keywords.values()), tuple(keywords),
               _typed(op_defaults.values()), tuple(op_defaults))
        cached = self.resolved.get(key)
        if cached is None:
            try:
                args = bind(op, positional, keywords, op_defaults, in_shape)
                cached = (args, op.infer(in_shape, args), op.params(in_shape, args))
            except OpError as err:
                cached = err
            self.resolved[key] = cached
        if isinstance(cached, OpError):
            raise OpError(cached.message, cached.hint, cached.arg)
        args, shape, params = cached
        return dict(args), shape, params

    # ---- blocks and stages ------------------------------------------------------------
    def bind_block(self, block: ir.Block, args: Iterable[ir.Arg], env: Mapping[str, Value],
                   span: Span, extra: Mapping[str, Value] | None = None) -> dict[str, Value]:
        positional, keywords, spans = self.eval_args(args, env)
        keywords = {**keywords, **(extra or {})}
        params = block.params
        if len(positional) > len(params):
            raise Problem(spans.get(f"#{len(params)}", span),
                          f"block '{block.name}' takes {len(params)} argument{'s' * (len(params) != 1)}, "
                          f"got {len(positional)}", hint=_block_usage(block))
        bound: dict[str, Value] = {}
        for param, value in zip(params, positional):
            bound[param.name] = value
        names = {p.name: p for p in params}
        for key, value in keywords.items():
            if key not in names:
                raise Problem(spans.get(key, span), f"block '{block.name}' has no parameter '{key}'",
                              hint=did_you_mean(key, names) or _block_usage(block))
            if key in bound:
                raise Problem(spans.get(key, span), f"'{key}' is given twice",
                              hint=_block_usage(block))
            bound[key] = value
        result: dict[str, Value] = {}
        # A view, not a copy: copying every network parameter per instance cost O(params).
        inner_env = ChainMap(result, self.graph.graph["params"])
        for index, param in enumerate(params):
            where = spans.get(param.name) or spans.get(f"#{index}") or span
            if param.name in bound:
                value = bound[param.name]
            elif param.default is not None:
                value = evaluate(param.default, inner_env)
            else:
                raise Problem(span, f"block '{block.name}' needs a value for '{param.name}'",
                              hint=_block_usage(block))
            converted = _convert(value, param.type)
            if converted is None:
                raise Problem(where, f"'{param.name}' of block '{block.name}' must be {param.type}, "
                              f"not {describe(value)} ({type_name(value)})", hint=_block_usage(block))
            result[param.name] = converted
        return result

    def apply_block(self, name: str, args, label: str | None, stmt, scope: Scope, x: Tensor,
                    defaults: dict, instance_name: str | None = None, extra=None) -> Tensor:
        block = self.blocks[name]
        if name in scope.block_stack:
            raise Problem(stmt.span, f"block '{name}' uses itself (recursion is not allowed)",
                          hint="a block may use other blocks, but not itself, directly or indirectly")
        if scope.depth >= self.limits.max_depth:
            raise Problem(stmt.span, f"blocks are nested more than {self.limits.max_depth} deep",
                          hint="flatten the block structure")
        self.count(self.cost(block), stmt.span, scope)  # binding evaluates the defaults
        bound = self.bind_block(block, args, scope.env, stmt.span, extra)
        local = instance_name if instance_name is not None else self.module_name(scope, label, name, stmt.span)
        path = scope.module_path(local)
        inner = Scope(
            path=path, container=path, env=ChainMap(bound, self.graph.graph["params"]),
            labels={"input": x}, reserved=self.declared_labels(block.body),
            depth=scope.depth + 1,
            notes=(_CallNote(path, name, bound, stmt.span),) + scope.notes,
            block_stack=scope.block_stack + (name,),
        )
        container = Container(path, "block", stmt.span, input=x.node, block=name, args=bound)
        self.open_container(scope, container, inner)
        out = self.body(block.body, inner, x, defaults)
        container.output = out.node
        if label is not None:
            self.set_label(scope, label, out, stmt.span)
        return out

    def open_container(self, parent: Scope, container: Container, inner: Scope | None = None) -> None:
        """Register a container: each instance is one step of work, even with no op inside."""
        self.count(1, container.span, inner or parent)
        self.graph.graph["containers"][container.path] = container
        self.graph.graph["containers"][parent.container].children.append(container.path)

    def stage(self, stmt: ir.Stage, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        if stmt.block not in self.blocks:
            raise Problem(stmt.name_span, f"unknown block '{stmt.block}' in stage",
                          hint=did_you_mean(stmt.block, self.blocks) or "define it with 'block NAME(...):'")
        block = self.blocks[stmt.block]
        count = evaluate(stmt.count, scope.env)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise Problem(stmt.count.span, f"a stage repeats its block a positive number of times, "
                          f"not {describe(count)}", hint="write e.g. 'x 3'")
        if count > self.limits.max_repeat:
            raise Problem(stmt.count.span, f"a stage of {count:,} blocks is over the limit of "
                          f"{self.limits.max_repeat:,}", hint="use fewer blocks")
        first_extra: dict[str, Value] = {}
        for option in stmt.options:
            if option.name != "stride":
                raise Problem(option.span, f"a stage takes only 'stride', not '{option.name}'",
                              hint="pass other values as block arguments: stage NAME(ARGS) x N")
            if "stride" not in {p.name for p in block.params}:
                raise Problem(option.span, f"stage stride=...: block '{block.name}' has no 'stride' parameter",
                              hint="add 'stride: int = 1' to the block's parameters and use it")
            first_extra["stride"] = evaluate(option.value, scope.env)
        name = self.module_name(scope, stmt.label, "stage", stmt.span)
        path = scope.module_path(name)
        container = Container(path, "stage", stmt.span, input=x.node, block=block.name)
        self.open_container(scope, container)
        stage_scope = Scope(path=path, container=path, env=scope.env, labels={}, reserved=set(),
                            depth=scope.depth, notes=scope.notes, block_stack=scope.block_stack)
        current = x
        for index in range(count):
            before, work_before, failures = self.nodes, self.work, self.failures
            current = self.apply_block(
                block.name, stmt.args, None, stmt, stage_scope, current, defaults,
                instance_name=str(index), extra=first_extra if index == 0 else None,
            )
            if self.failures != failures:
                # The other instances would meet the same problems: stop this stage here.
                current = Tensor(current.node, None, stmt.span)
                break
            if index == 0:
                self.check_stage_size(stmt, count, self.nodes - before, self.work - work_before)
        container.output = current.node
        self.set_label(scope, stmt.label, current, stmt.span)
        return current

    def check_stage_size(self, stmt: ir.Stage, count: int, nodes: int, work: int) -> None:
        """One instance tells the size of the rest: refuse a runaway stage at its own line.

        Work is counted too (an instance takes at least one step), so a stage of blocks
        that make no op cannot multiply unseen.
        """
        total = self.nodes + (count - 1) * nodes
        if total > self.limits.max_nodes:
            raise Problem(stmt.span, f"this stage would make {total:,} ops in all, over "
                          f"the limit of {self.limits.max_nodes:,}",
                          hint="use fewer blocks, or raise the limit (Limits.max_nodes)")
        total = self.work + (count - 1) * max(work, 1)
        if total > self.limits.max_work:
            raise Problem(stmt.span, f"this stage would take {total:,} elaboration steps in all, over "
                          f"the limit of {self.limits.max_work:,}",
                          hint="use fewer blocks, or raise the limit (Limits.max_work)")

    # ---- residual units -------------------------------------------------------------
    def residual_options(self, stmt: ir.Residual, env) -> tuple[str, float, float]:
        policy, drop_path, scale = "auto", 0.0, 1.0
        for option in stmt.options:
            value = evaluate(option.value, env)
            if option.name == "shortcut":
                if value not in SHORTCUT_POLICIES:
                    shown = f"'{value}'" if isinstance(value, str) else describe(value)
                    raise Problem(option.span, f"unknown shortcut policy {shown}",
                                  hint=f"shortcut is one of {', '.join(SHORTCUT_POLICIES)}")
                policy = value
            elif option.name == "drop_path":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                    raise Problem(option.span, f"drop_path must be a probability in [0, 1), not {describe(value)}",
                                  hint="write e.g. drop_path=0.1")
                drop_path = float(value)
            elif option.name == "scale":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise Problem(option.span, f"scale must be a number, not {describe(value)}",
                                  hint="write e.g. scale=0.1")
                scale = float(value)
            else:
                raise Problem(option.span, f"residual has no option '{option.name or describe(value)}'",
                              hint="residual [shortcut=P] [, drop_path=p] [, scale=s]:")
        return policy, drop_path, scale

    def residual(self, stmt: ir.Residual, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        policy, drop_path, scale = self.residual_options(stmt, scope.env)
        if scope.depth >= self.limits.max_depth:
            raise Problem(stmt.span, f"residuals are nested more than {self.limits.max_depth} deep",
                          hint="flatten the structure")
        if self.forced_policy is not None and stmt.shortcut is None:
            policy = self.forced_policy
        if stmt.label is not None:
            name = self.module_name(scope, stmt.label, "residual", stmt.span)
            path = scope.module_path(name)
            inner = Scope(path=path, container=path, env=scope.env, labels={"input": x},
                          reserved=self.declared_labels(stmt.body), depth=scope.depth + 1,
                          notes=scope.notes, block_stack=scope.block_stack)
            self.open_container(scope, Container(path, "residual", stmt.span, input=x.node), inner)
        else:
            inner = scope
        first_node = self.nodes
        # An unlabelled body shares its scope but still nests: count it against max_depth.
        depth_bump = 1 if inner is scope else 0
        scope.depth += depth_bump
        try:
            body_out = self.body(stmt.body, inner, x, defaults)
        finally:
            scope.depth -= depth_bump
        # The body's last zero-init norm off any shortcut: kept as it is made, not searched
        # for (a search per unit cost O(depth x nodes) in nested residuals).
        last_norm = self.norms[-1] if self.norms and self.norms[-1] >= first_node else None
        if self.plain or (policy == "none" and stmt.shortcut is None):
            out, kind = body_out, "none"
        else:
            shortcut, kind, edge = self.shortcut(stmt, inner, x, body_out, policy, defaults)
            out = self.merge(stmt, inner, body_out, shortcut, edge, scale, drop_path)
        if stmt.label is not None:
            self.graph.graph["containers"][inner.container].output = out.node
        self.graph.graph["residuals"].append(ResidualUnit(
            merge=out.node, input=x.node, body_output=body_out.node, shortcut=kind,
            last_norm=last_norm, container=inner.container, span=stmt.span,
        ))
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def shortcut(self, stmt, scope: Scope, x: Tensor, body_out: Tensor, policy: str, defaults: dict):
        if stmt.shortcut is not None and not self.plain:
            if policy not in ("auto",):
                raise Problem(stmt.shortcut_span, f"shortcut={policy} and an explicit 'shortcut:' path conflict",
                              hint="keep one: the explicit path replaces the policy")
            out, edge = self.explicit_shortcut(stmt, scope, x, defaults)
            return out, "explicit", edge
        if x.shape is None or body_out.shape is None:
            return x, "identity", "skip-identity"
        match = x.shape == body_out.shape
        if policy == "identity" and not match:
            raise Problem(stmt.span, f"shortcut=identity, but the body changes the shape from "
                          f"{format_shape(x.shape)} to {format_shape(body_out.shape)}",
                          hint="use shortcut=auto (projection) or shortcut=A (zero-padding), or keep the shape",
                          notes=(f"the body's output comes from line {body_out.origin.line}",))
        if policy == "C" or (policy in ("auto", "B") and not match):
            return self.projection(stmt, scope, x, body_out.shape), "projection", "skip-projection"
        if policy == "A" and not match:
            return self.zero_pad(stmt, scope, x, body_out.shape), "zero-pad", "skip-zero-pad"
        return x, "identity", "skip-identity"

    def shortcut_stride(self, stmt, x_shape: Shape, target: Shape, what: str) -> tuple[int, ...]:
        if len(x_shape) != len(target):
            raise Problem(stmt.span, f"{what} shortcut cannot turn {format_shape(x_shape)} into "
                          f"{format_shape(target)} (different ranks)", hint="add an explicit 'shortcut:' path")
        strides = []
        for size, out in zip(x_shape[1:], target[1:]):
            stride = -(-size // out)
            if out > size or -(-size // stride) != out:
                raise Problem(stmt.span, f"{what} shortcut cannot turn {format_shape(x_shape)} into "
                              f"{format_shape(target)}: the spatial size must shrink by an integer stride",
                              hint="add an explicit 'shortcut:' path that produces the body's shape")
            strides.append(stride)
        return tuple(strides)

    def shortcut_scope(self, scope: Scope, stmt, x: Tensor) -> Scope:
        # torchvision's name for the first projection; later ones are downsample_1, _2, ...
        scope.counters.setdefault("downsample", 1)
        name = self.module_name(scope, "downsample" if "downsample" not in scope.used else None,
                                "downsample", stmt.span)
        path = scope.module_path(name)
        self.open_container(scope, Container(path, "shortcut", stmt.span, input=x.node))
        return Scope(path=path, container=path, env=scope.env, labels={"input": x}, reserved=set(),
                     sequential=True, depth=scope.depth + 1, notes=scope.notes,
                     block_stack=scope.block_stack)

    def projection(self, stmt, scope: Scope, x: Tensor, target: Shape) -> Tensor:
        strides = self.shortcut_stride(stmt, x.shape, target, "projection")
        inner = self.shortcut_scope(scope, stmt, x)
        out = x
        for index, (op, args) in enumerate(projection(x.shape, target, strides)):  # the catalogue's recipe
            spec = REGISTRY[op]
            shape = spec.infer(out.shape, args)
            out = self.add_node(op, args, [out], ["skip-projection"], shape, inner, stmt.span,
                                module=inner.module_path(str(index)), params=spec.params(out.shape, args),
                                shortcut=True)
        self.graph.graph["containers"][inner.container].output = out.node
        return out

    def zero_pad(self, stmt, scope: Scope, x: Tensor, target: Shape) -> Tensor:
        strides = self.shortcut_stride(stmt, x.shape, target, "option A")
        extra = target[0] - x.shape[0]
        if extra < 0:
            raise Problem(stmt.span, f"option A pads channels with zeros, but the body reduces them "
                          f"({x.shape[0]} -> {target[0]})", hint="use shortcut=B (projection)")
        args = {"stride": strides, "channels": extra}
        name = self.module_name(scope, None, "zero_pad", stmt.span)
        return self.add_node("zero_pad", args, [x], ["skip-zero-pad"], target, scope, stmt.span,
                             module=scope.module_path(name), shortcut=True)

    def explicit_shortcut(self, stmt, scope: Scope, x: Tensor, defaults: dict) -> tuple[Tensor, str]:
        inner = self.shortcut_scope(scope, stmt, x)
        first = self.nodes
        out = self.body(stmt.shortcut, inner, x, defaults)
        created = range(first, self.nodes)
        while self.norms and self.norms[-1] >= first:  # shortcut norms are no body's last norm
            self.norms.pop()
        weighted = any(self.graph.nodes[n]["params"] for n in created)
        kind = "skip-projection" if weighted else "skip-identity"
        for node in created:
            self.graph.nodes[node]["shortcut"] = True
            for pred in self.graph.predecessors(node):
                self.graph.edges[pred, node]["kind"] = kind
        self.graph.graph["containers"][inner.container].output = out.node
        return out, kind

    def merge(self, stmt, scope: Scope, body_out: Tensor, shortcut: Tensor, edge: str,
              scale: float, drop_path: float) -> Tensor:
        shape = None
        if body_out.shape is not None and shortcut.shape is not None:
            if body_out.shape != shortcut.shape:
                raise Problem(stmt.span, f"residual: the body gives {format_shape(body_out.shape)} but the "
                              f"shortcut gives {format_shape(shortcut.shape)}",
                              hint="make the shortcut path produce the body's shape",
                              notes=(f"the body's output comes from line {body_out.origin.line}",
                                     f"the shortcut's output comes from line {shortcut.origin.line}"))
            shape = body_out.shape
        name = self.module_name(scope, None, "residual_add", stmt.span)
        return self.add_node("residual_add", {"scale": scale, "drop_path": drop_path},
                             [body_out, shortcut], ["data", edge], shape, scope, stmt.span,
                             module=scope.module_path(name))

    # ---- long skips ------------------------------------------------------------------
    def ref(self, stmt: ir.Ref, scope: Scope, x: Tensor) -> Tensor:
        target = scope.labels.get(stmt.target)
        if target is None:
            # Labels in definition order, as LANGUAGE.md section 9 shows them; the input
            # is always reachable as 'input', so it is not listed.
            inputs = {n for n, t in scope.labels.items() if t.node == scope.labels["input"].node}
            visible = [name for name in scope.labels if name not in inputs]
            hint = "labels in scope: " + ", ".join(visible) if visible else \
                "no statement in this scope is labelled yet; 'input' names the input tensor"
            raise Problem(stmt.target_span,
                          f"{stmt.kind} '{stmt.target}': no tensor labelled '{stmt.target}' in this scope",
                          hint=hint)
        if stmt.kind == "from":
            for option in stmt.options:
                raise Problem(option.span, "'from' takes no options", hint="write 'from LABEL'")
            self.set_label(scope, stmt.label, target, stmt.span)
            return target
        args: dict[str, Any] = {}
        for option in stmt.options:
            value = evaluate(option.value, scope.env)
            if stmt.kind == "concat" and option.name == "crop":
                if value != "center":
                    raise Problem(option.span, f"crop must be 'center', not {describe(value)}",
                                  hint="write 'concat LABEL, crop=center'")
                args["crop"] = "center"
            else:
                raise Problem(option.span, f"{stmt.kind} has no option '{option.name or describe(value)}'",
                              hint="concat LABEL [, crop=center]; add LABEL; mul LABEL")
        if stmt.kind == "concat":
            args.setdefault("crop", None)
        shape = None
        if x.shape is not None and target.shape is not None:
            try:
                shape = merge_shape(stmt.kind, [x.shape, target.shape], args)
            except OpError:
                raise self.mismatch(stmt, x, target) from None
            shape = self.checked_size(shape, stmt.span)
        name = self.module_name(scope, stmt.label, stmt.kind, stmt.span)
        out = self.add_node(stmt.kind, args, [x, target], ["data", f"long-{stmt.kind}"], shape, scope,
                            stmt.span, module=scope.module_path(name), label=stmt.label)
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def mismatch(self, stmt: ir.Ref, x: Tensor, target: Tensor) -> Problem:
        notes = (f"the current tensor {format_shape(x.shape)} comes from line {x.origin.line}",
                 f"'{stmt.target}' {format_shape(target.shape)} comes from line {target.origin.line}")
        if stmt.kind == "concat":
            if len(x.shape) == len(target.shape) and any(t < c for t, c in zip(target.shape[1:], x.shape[1:])):
                return Problem(stmt.target_span,
                               f"concat '{stmt.target}': {format_shape(target.shape)} is smaller than the current "
                               f"tensor {format_shape(x.shape)} and cannot be cropped to it",
                               hint="concat the larger tensor onto the smaller one's path", notes=notes)
            return Problem(stmt.target_span,
                           f"concat '{stmt.target}': spatial sizes differ: current {format_shape(x.shape)}, "
                           f"'{stmt.target}' {format_shape(target.shape)}",
                           hint="add ', crop=center' to crop the earlier tensor, or pad the convolutions",
                           notes=notes)
        return Problem(stmt.target_span,
                       f"{stmt.kind} '{stmt.target}': shapes differ: current {format_shape(x.shape)}, "
                       f"'{stmt.target}' {format_shape(target.shape)}",
                       hint="element-wise ops need equal shapes", notes=notes)


def _expression_size(node: Any) -> int:
    """Expression nodes a statement (or a block's parameter defaults) evaluates, found
    without recursion; bodies are not included (they are counted as they are visited)."""
    roots: list[Any] = []
    if isinstance(node, ir.Block):
        roots = [p.default for p in node.params if p.default is not None]
    else:
        for name in ("args", "options"):
            roots.extend(arg.value for arg in getattr(node, name, ()))
        if isinstance(node, ir.Stage):
            roots.append(node.count)
    size, stack = 0, roots
    while stack:
        expr = stack.pop()
        size += 1
        if isinstance(expr, ir.BinOp):
            stack += (expr.left, expr.right)
        elif isinstance(expr, ir.Neg):
            stack.append(expr.operand)
        elif isinstance(expr, ir.FuncCall):
            stack.extend(expr.args)
    return size


def _typed(values: Iterable[Any]) -> tuple:
    """Values and their types, so a cache key tells 1, 1.0 and true apart.

    (Tuples in argument values are kernel sizes, whose entries are always ints.)
    """
    values = tuple(values)
    return values + tuple(map(type, values))


def _block_usage(block: ir.Block) -> str:
    parts = [p.name if p.default is None else f"{p.name}=..." for p in block.params]
    return f"usage: {block.name}({', '.join(parts)})"


def _parse_literal(text: str) -> Value:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _plain(value: Any) -> Any:
    """An API value as a plain bool, int, float or str (the base type's own copy, so no
    subclass method - ``__repr__``, ``__str__``, ``__index__`` - ever runs); other
    objects are returned as they are, and refused by ``_convert``."""
    if type(value) is bool:
        return value
    if isinstance(value, int):  # IntEnum, IntFlag, any int subclass
        return int.__index__(value)
    if isinstance(value, float):  # numpy.float64 and other float subclasses
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    return value


def _shown(value: Any) -> str:
    """An override as an error message shows it: short, and never str() of a huge int."""
    if type(value) not in (bool, int, float, str):  # never run a foreign __str__
        return f"<a {type(value).__name__} object>"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<a {value.bit_length():,}-bit integer>"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _convert(value: Any, type_: str) -> Value | None:
    """A value for a parameter of ``type_``, or ``None`` when it does not fit."""
    if type_ == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if type_ == "int":
        return value if isinstance(value, int) else None
    try:
        return float(value)
    except OverflowError:  # an int past float range (-D x=<400 digits>); callers bound it
        return float("inf")


def elaborate(
    network: ir.Network,
    blocks: Mapping[str, ir.Block],
    errors: ErrorList,
    overrides: Mapping[str, Any] | None = None,
    plain: bool = False,
    limits: Limits = Limits(),
    shortcut: str | None = None,
) -> nx.DiGraph:
    """IR of one network -> graph; problems are recorded in ``errors``.

    ``plain`` drops every skip; ``shortcut`` forces one policy (auto, A, B, C,
    identity, none) on every residual that has no explicit ``shortcut:`` path.
    """
    if shortcut is not None and shortcut not in SHORTCUT_POLICIES:
        raise ValueError(f"shortcut must be one of {', '.join(SHORTCUT_POLICIES)}, not {shortcut!r}")
    elaborator = Elaborator(network, blocks, errors, overrides, plain, limits, shortcut)
    try:
        return elaborator.run()
    except _Full:  # the diagnostic cap is reached: more work would only be dropped
        return elaborator.graph
    except Problem as problem:  # a limit hit: stop here
        try:
            elaborator.report(problem)
        except _Full:
            pass
        return elaborator.graph
    except RecursionError:
        errors.add(network.span, "the spec is nested too deeply to elaborate",
                   hint="reduce the nesting of blocks and residuals")
        return elaborator.graph
