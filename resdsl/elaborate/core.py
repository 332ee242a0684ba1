"""The elaborator: graph construction, work accounting, statement dispatch and ops."""

from __future__ import annotations

from collections import ChainMap
from typing import Any, Iterable, Mapping

import networkx as nx

from .. import ir
from ..errors import ErrorList, Problem, Span, did_you_mean
from ..expr import UNKNOWN, Value, _Unknown, describe, evaluate
from ..graph import Container, Made, OpEdge, OpNode, add_op_node, new_graph, op_edge, op_node, set_edge
from ..ops import REGISTRY, OpError, bind, signature_hint, user_ops
from ..ops.base import batch_of, is_ids
from ..shapes import Shape, format_shape
from ..vocab import ORDER_WORD, PARAMETER_WORD, STATEMENT_WORDS
from .blocks import BlocksMixin
from .limits import LimitProblem, Limits, _Full
from .params import ParamsMixin
from .refs import RefsMixin
from .residuals import ResidualsMixin
from .scope import Scope, Tensor, _declared_labels
from .sequential import SequentialMixin
from .values import _expression_size, _typed


class Elaborator(ParamsMixin, BlocksMixin, ResidualsMixin, RefsMixin, SequentialMixin):
    """Walks one network's IR and builds its graph; each mixin holds one concept."""

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
        # what the caller set (-D, a zoo variant): the diagram's title names them
        self.graph.graph["overrides"] = {p.name: env[p.name] for p in net.params
                                          if p.name in self.overrides and p.name in env}
        in_shape = self.input_shape(net.input, env)
        root = Scope(path="", container="", env=env, labels={},
                     reserved=_declared_labels(net.body))
        self.graph.graph["containers"][""] = Container("", "network", net.span)
        dtype = {"dtype": "int"} if net.input.dtype == "int" else {}  # token ids (v2)
        x = self.add_node("input", dtype, [], [], in_shape, root, net.input, module=None,
                          label=net.input.name)
        root.labels[net.input.name] = x
        if net.input.name != "input":
            root.labels["input"] = x
        self.graph.graph["input"] = x.node
        self.check_block_names()
        out = self.body(net.body, root, x, {})
        self.check_order(root)
        last = op_node(self.graph, out.node)
        if out.shape is not None and batch_of(last.op, last.args) != "full":
            self.error(out.origin, "the network's output is a learnable tensor (a 'parameter'), "
                       "which has no batch dimension", hint="end with an op on the activations, "
                       "e.g. 'mul LABEL' of the parameter")
        if is_ids(last):
            self.error(out.origin, "the network's output is its token ids (the int input)",
                       hint="end with an op on the embedded tokens")
        self.graph.graph["output"] = out.node
        self.graph.graph["containers"][""].input = x.node
        self.graph.graph["containers"][""].output = out.node
        return self.graph


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
        stmt: Made,
        module: str | None,
        label: str | None = None,
        params: int = 0,
        shortcut: bool = False,
        container: str | None = None,
    ) -> Tensor:
        """Add a node made by IR statement ``stmt`` (an :class:`~resdsl.graph.OpNode`),
        with its edges from ``inputs``."""
        span = stmt.span
        if self.nodes >= self.limits.max_nodes:
            raise LimitProblem(span, f"the network has more than {self.limits.max_nodes:,} ops",
                               hint="reduce the depth, or raise the limit (Limits.max_nodes)",
                               notes=scope.notes)
        self.check_batched(op, inputs, stmt, scope)
        self.check_ids(op, inputs, stmt, scope)
        node = self.nodes
        self.nodes += 1
        if not shortcut and REGISTRY[op].zero_init_norm:
            self.norms.append(node)
        graph = self.graph
        # Positional, in OpNode's field order (keywords cost a third more, per node).
        add_op_node(graph, OpNode(
            node, op, args, tuple(t.node for t in inputs), tuple(t.shape for t in inputs), shape, module,
            scope.container if container is None else container, span, stmt, label, params, shortcut,
        ))
        for port, (tensor, kind) in enumerate(zip(inputs, edge_kinds)):
            if port and graph.has_edge(tensor.node, node):  # the same tensor twice (``add x`` of itself)
                edge = op_edge(graph, tensor.node, node)
                set_edge(graph, tensor.node, node, OpEdge(edge.kind, edge.shape, edge.ports + (port,)))
            else:
                set_edge(graph, tensor.node, node, OpEdge(kind, tensor.shape, (port,)))
        return Tensor(node, shape, span)

    def check_batched(self, op: str, inputs: list[Tensor], stmt: Made, scope: Scope) -> None:
        """A learnable tensor has no batch dim: only a broadcasting merge with a batched
        tensor may read it (torch would apply any other op to it as one unbatched sample)."""
        kinds = [batch_of(data.op, data.args) for data in (op_node(self.graph, t.node) for t in inputs)]
        unbatched = [t for t, kind in zip(inputs, kinds) if kind == "none"]
        single = [t for t, kind in zip(inputs, kinds) if kind == "one"]
        if single and (not REGISTRY[op].takes_single or len(single) == len(inputs)):
            raise Problem(stmt.span, f"{op} reads a learnable tensor with a batch dim of one (a "
                          f"'parameter ..., batch=true', line {single[0].origin.line})",
                          hint="use it in 'add', 'mul' or 'concat' with an activation", notes=scope.notes)
        if unbatched and (not REGISTRY[op].takes_unbatched or len(unbatched) == len(inputs)):
            what = "the residual's addition" if isinstance(stmt, ir.Residual) else op
            raise Problem(stmt.span, f"{what} reads a learnable tensor (a 'parameter', line "
                          f"{unbatched[0].origin.line}), which has no batch dimension",
                          hint="use a parameter in 'add LABEL' or 'mul LABEL' with an activation; "
                               "'from' an activation first", notes=scope.notes)

    def check_ids(self, op: str, inputs: list[Tensor], stmt: Made, scope: Scope) -> None:
        """Token ids (an ``int`` input) are read by the ops that take ids (embedding), and
        those read nothing else; ``positions`` reads either (only its length)."""
        reads = REGISTRY[op].reads
        ids = [t for t in inputs if is_ids(op_node(self.graph, t.node))]
        readers = ", ".join(sorted(n for n, spec in REGISTRY.items() if spec.reads == "ids"))
        if reads == "ids" and len(ids) < len(inputs):
            raise Problem(stmt.span, f"{op} reads token ids (an input declared '[...], int'), "
                          "but its input is a float tensor",
                          hint="declare the ids 'input ids: [seq], int' and embed them first, or "
                               "'from ids' to read them", notes=scope.notes)
        if reads == "float" and ids:
            what = "the residual's addition" if isinstance(stmt, ir.Residual) else op
            raise Problem(stmt.span, f"{what} reads token ids (the int input, line {ids[0].origin.line}), "
                          f"which only {readers} may read",
                          hint="embed the ids first (e.g. 'embedding VOCAB, DIM')", notes=scope.notes)

    def module_name(self, scope: Scope, label: str | None, base: str, span: Span) -> str:
        """The submodule name of a statement: its label, or a deterministic automatic name."""
        if label is not None:
            name = label
            scope.position += scope.sequential  # every child of a sequential takes a position
        elif scope.sequential:
            name = str(scope.position)
            scope.position += 1
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
            if isinstance(stmt, ir.If):  # no level of its own: the chosen body runs right here
                chosen = self.branch(stmt, scope)
                if chosen is not None:
                    current = self.body(chosen, scope, current, defaults)
                continue
            if isinstance(stmt, ir.Repeat):  # no level of its own either: the body, N times
                for _ in range(self.repeats(stmt, scope)):
                    failures = self.failures
                    current = self.body(stmt.body, scope, current, defaults)
                    if self.failures != failures:  # the next rounds would meet the same problems
                        break
                continue
            try:
                if isinstance(stmt, ir.Let):
                    self.let(stmt, scope)
                    continue
                current = self.statement(stmt, scope, current, defaults)
            except LimitProblem:
                raise
            except _Unknown:  # channels() of a tensor whose shape an earlier error left unknown
                current = Tensor(current.node, None, stmt.span)
            except Problem as problem:
                self.report(problem, scope)
                current = Tensor(current.node, None, stmt.span)
                if getattr(stmt, "label", None):
                    scope.labels[stmt.label] = current
        return current

    # ---- v2: order, let, if -----------------------------------------------------------
    def order(self, stmt: ir.Apply, scope: Scope) -> None:
        """``order A, B, ...``: register these submodules of the block (or network) first,
        in this order, as a hand-written ``__init__`` would (nn.TransformerEncoderLayer
        registers self_attn, linear1, ... in another order than they run)."""
        container = self.graph.graph["containers"][scope.container]
        if container.kind not in ("block", "network") or scope.order is not None:
            raise Problem(stmt.span, "'order' stands once in a block or network body, not in a "
                          "sequential, stage or labelled residual", hint="move it to the block's body")
        names = []
        for arg in stmt.args:
            if arg.name is not None or not isinstance(arg.value, ir.NameRef):
                raise Problem(arg.span, "order takes the names of the block's submodules",
                              hint="write e.g. 'order self_attn, linear1, linear2, norm1, norm2'")
            if arg.value.name in names:
                raise Problem(arg.span, f"'{arg.value.name}' is listed twice", hint="list each name once")
            names.append(arg.value.name)
        if not names:
            raise Problem(stmt.span, "order lists no names", hint="write e.g. 'order self_attn, linear1'")
        scope.order = (stmt, tuple(names))
        container.order = tuple(names)

    def check_order(self, scope: Scope) -> None:
        """Every name an ``order`` lists is a submodule the body made."""
        if scope.order is None:
            return
        stmt, names = scope.order
        for arg, name in zip(stmt.args, names):
            if name not in scope.used:
                self.error(arg.span, f"order: this body makes no submodule named '{name}'",
                           hint=did_you_mean(name, scope.used) or "list the labels of the body's statements")


    def let(self, stmt: ir.Let, scope: Scope) -> None:
        if stmt.name in scope.env:
            raise Problem(stmt.name_span, f"'{stmt.name}' is already a name in this scope",
                          hint="a let binds a new name once; choose another name")
        try:
            value = evaluate(stmt.value, scope.env, scope.shape_of)
        except _Unknown:
            value = UNKNOWN
        if scope.lets is None:  # one layer for all of a body's lets: a layer per let nested
            scope.lets = {}     # ChainMaps as deep as the lets (RecursionError at ~1,000)
            scope.env = ChainMap(scope.lets, scope.env)
        scope.lets[stmt.name] = value

    def repeats(self, stmt: ir.Repeat, scope: Scope) -> int:
        """How many times a ``repeat`` runs its body (0 after an error in the count)."""
        try:
            count = evaluate(stmt.count, scope.env, scope.shape_of)
        except _Unknown:
            return 0
        except Problem as problem:
            self.report(problem, scope)
            return 0
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self.error(stmt.count.span, f"repeat takes a count of 0 or more, not {describe(count)}",
                       hint="write e.g. 'repeat n:'")
            return 0
        if count > self.limits.max_repeat:
            self.error(stmt.count.span, f"repeat {count:,} is over the limit of {self.limits.max_repeat:,}",
                       hint="use fewer repeats")
            return 0
        return count

    def branch(self, stmt: ir.If, scope: Scope) -> tuple[ir.Stmt, ...] | None:
        """The body an ``if`` chooses (an ``elif`` is an ``if`` alone in ``orelse``), or
        None when its condition cannot be evaluated."""
        try:
            cond = evaluate(stmt.cond, scope.env, scope.shape_of)
        except _Unknown:
            return None
        except Problem as problem:
            self.report(problem, scope)
            return None
        if not isinstance(cond, bool):
            self.error(stmt.cond.span, f"'if' needs true or false, not {describe(cond)}",
                       hint="write a comparison such as 'stride == 1', or a bool parameter")
            return None
        return stmt.body if cond else stmt.orelse

    def statement(self, stmt: ir.Stmt, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        if isinstance(stmt, ir.Apply):
            name = stmt.name
            chosen = scope.env.get(name)
            if isinstance(chosen, str) and name not in self.ops and name not in self.blocks:
                # A str parameter names the op or block to apply (``act`` with act=hardswish).
                if chosen not in self.ops and chosen not in self.blocks:
                    raise Problem(stmt.name_span, f"'{name}' is '{chosen}', which is no op or block",
                                  hint=self.suggest(chosen) or "pass the name of an op, e.g. relu")
                stmt = stmt.model_copy(update={"name": chosen})
                name = chosen
            if name == PARAMETER_WORD:
                return self.parameter(stmt, scope)
            if name == ORDER_WORD:
                self.order(stmt, scope)
                return x
            if name in self.ops:
                return self.apply_op(stmt, scope, x, defaults)
            if name in self.blocks:
                return self.apply_block(name, stmt.args, stmt.label, stmt, scope, x, defaults)
            raise Problem(stmt.name_span, f"unknown op or block '{stmt.name}'",
                          hint=self.suggest(stmt.name))
        if isinstance(stmt, ir.Stage):
            return self.stage(stmt, scope, x, defaults)
        if isinstance(stmt, ir.Residual):
            return self.residual(stmt, scope, x, defaults)
        if isinstance(stmt, ir.Ref):
            return self.ref(stmt, scope, x)
        if isinstance(stmt, ir.Sequential):
            return self.sequential(stmt, scope, x, defaults)
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

    def eval_args(self, args: Iterable[ir.Arg], env: Mapping[str, Value], shape_of=None):
        positional: list[Value] = []
        keywords: dict[str, Value] = {}
        spans: dict[str, Span] = {}
        for arg in args:
            value = evaluate(arg.value, env, shape_of)
            if arg.name is None:
                spans[f"#{len(positional)}"] = arg.span
                positional.append(value)
            else:
                spans[arg.name] = arg.span
                keywords[arg.name] = value
        return positional, keywords, spans

    def apply_op(self, stmt: ir.Apply, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        op = self.ops[stmt.name]
        positional, keywords, spans = self.eval_args(stmt.args, scope.env, scope.shape_of)
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
            for spec in op.args:
                if spec.kind == "tie" and args.get(spec.name) is not None:
                    self.check_tie(op, spec.name, args, x.shape, spans.get(spec.name, stmt.span), scope)
        out = self.add_node(op.name, args, [x], ["data"], shape, scope, stmt,
                            module=scope.module_path(name), label=stmt.label, params=params or 0)
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def check_tie(self, op, arg: str, args: dict, in_shape: Shape, span: Span, scope: Scope) -> None:
        """``tie=LABEL``: the weight is that of an earlier layer of this scope, of equal shape."""
        label = args[arg]
        target = scope.labels.get(label)
        node = op_node(self.graph, target.node) if target is not None else None
        if node is None or node.module != scope.module_path(label):
            raise Problem(span, f"{op.name}: {arg}={label}: no layer labelled '{label}' in this scope",
                          hint="tie to an embedding or linear labelled earlier in the same block")
        theirs_of = REGISTRY[node.op].weight_shape
        if theirs_of is None or node.shape is None:
            raise Problem(span, f"{op.name}: {arg}={label}: '{label}' is a {node.op}, which has no "
                          "weight to share", hint="tie to an embedding or linear")
        ours, theirs = op.weight_shape(in_shape, args), theirs_of(node.in_shapes[0], node.args)
        if tuple(ours) != tuple(theirs):
            raise Problem(span, f"{op.name}: {arg}={label}: the weights differ in shape: "
                          f"{format_shape(ours)} here, {format_shape(theirs)} of '{label}' "
                          f"(line {node.span.line})",
                          hint="a tied weight needs the same shape: an embedding VOCAB, DIM ties a "
                               "linear VOCAB reading DIM features")

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
