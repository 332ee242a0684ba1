"""Which network parameters the generated class may take other values of.

A parameter is *live* when the generated class, built with another value, is the
module the spec gives with that value; otherwise it is *frozen*: ``__init__``
raises for any other value. Decided from the graph and the IR alone, in one pass,
with no second elaboration. A parameter is frozen when

1. it reaches a position the code always writes as structure: a stage count, a
   residual's options other than ``scale``/``drop_path``, a ref option, or a
   ``defaults`` statement (:class:`Flow`, read from the IR);
2. it decides an automatic shortcut: whether the body's output shape equals the
   input's is not the same for every value (:meth:`Dependence.decisions`);
3. a value derived from it is written as a literal, or as an expression not proved
   equal to it for every value (:class:`Writes`, fed by the generator as it writes).

Values are followed as *forms* (:mod:`.forms`): every node's shape and arguments are
recomputed over symbolic values by the catalogue's own shape rules, along the
graph's recorded structure. That reads a shape rule as data flow: a rule that
chooses a size by comparing sizes (``min``, ``if``) is followed only through the
value it returns. The catalogue's rules compare sizes only to refuse a shape.

Automatic shortcut strides are ``ceil(input / output)`` per spatial dimension. A
body that keeps the size (equal forms) gives stride 1 for every size; a body
whose output is ``ceil(input / 2)`` gives 2 for every input of at least 2, and at
an input of 1 both strides read the one position, so the stride counts as
constant. Any other ratio is not constant (``ceil(5 / ceil(5 / 4)) = 3``) and
depends on whatever reaches the sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ... import ir
from ...graph import op_node, op_nodes
from ...ops import REGISTRY, REQUIRED, user_ops
from .forms import (
    Form, Sym, as_kind, constant, deps_of, evaluate_form, key_of, parameter, same, unknown, value_of,
)
from .text import names

if TYPE_CHECKING:  # pragma: no cover
    from .generator import Generator

_NET = "net"  # a symbol of the flow analysis: ("net", name) is a network parameter
_ARG = "arg"  # ("arg", name) is a parameter of the block being summarised


class Flow:
    """Network parameters that reach a structural position, read from the IR alone.

    ``hard``: parameters reaching a stage count (the number of instances), a
    residual's shortcut policy, a ref option or a ``defaults`` statement. Each block
    is summarised once, over symbols of its own parameters and of the network's,
    and the summary is mapped at every call.
    """

    def __init__(self, network: ir.Network, blocks: dict[str, ir.Block]):
        self.ops = user_ops()
        self.blocks = blocks
        self.net_names = {p.name for p in network.params}
        self.summaries: dict[str, set] = {}
        self.active: set[str] = set()
        env = {name: {(_NET, name)} for name in self.net_names}
        self.hard: set = set()
        self.body(network.body, env, self.hard)

    @staticmethod
    def deps(expr: ir.Expr, env: dict[str, set]) -> set:
        found: set = set()
        for name in names(expr):
            found |= env.get(name, set())
        return found

    def body(self, stmts, env: dict[str, set], hard: set) -> None:
        for stmt in stmts:
            if isinstance(stmt, ir.Let):  # the name carries its value's dependencies
                env = {**env, stmt.name: self.deps(stmt.value, env)}
            elif isinstance(stmt, ir.If):  # which body exists is structure
                hard |= self.deps(stmt.cond, env)
                self.body(stmt.body, env, hard)
                self.body(stmt.orelse, env, hard)
            elif isinstance(stmt, ir.Sequential):
                self.body(stmt.body, env, hard)
            elif isinstance(stmt, ir.Repeat):  # how often the body exists is structure
                hard |= self.deps(stmt.count, env)
                self.body(stmt.body, env, hard)
            elif isinstance(stmt, ir.Defaults):
                for arg in stmt.args:
                    hard |= self.deps(arg.value, env)
            elif isinstance(stmt, ir.Apply):
                if stmt.name in env:  # a str parameter names the op or block: structure
                    hard |= env[stmt.name]
                    for block in self.blocks.values():  # it may name any block
                        self.call(block, stmt.args, {}, env, hard)
                elif stmt.name not in self.ops and stmt.name in self.blocks:
                    self.call(self.blocks[stmt.name], stmt.args, {}, env, hard)
            elif isinstance(stmt, ir.Stage):
                hard |= self.deps(stmt.count, env)
                for option in stmt.options:
                    if option.name not in ("stride", "index"):  # naming and placement are structure
                        hard |= self.deps(option.value, env)
                    if option.name == "index" and isinstance(option.value, ir.NameRef):
                        env = {**env, option.value.name: set()}
                extra = {o.name: o.value for o in stmt.options if o.name == "stride"}
                if stmt.block in self.blocks:  # the first instance takes the stride option
                    self.call(self.blocks[stmt.block], stmt.args, extra, env, hard)
                    if extra:
                        self.call(self.blocks[stmt.block], stmt.args, {}, env, hard)
            elif isinstance(stmt, ir.Residual):
                for option in stmt.options:
                    if option.name not in ("scale", "drop_path"):
                        hard |= self.deps(option.value, env)
                self.body(stmt.body, env, hard)
                self.body(stmt.shortcut or (), env, hard)
            elif isinstance(stmt, ir.Ref):
                for option in stmt.options:
                    hard |= self.deps(option.value, env)

    def call(self, block: ir.Block, args, extra: dict, env: dict[str, set], hard: set) -> None:
        """Map ``block``'s summary through one call's argument expressions."""
        given = {**ir.args_by_name(args, [p.name for p in block.params]), **extra}
        bound: dict[str, set] = {}
        for param in block.params:
            if param.name in given:
                bound[param.name] = self.deps(given[param.name], env)
            elif param.default is not None:  # evaluated among the network's and earlier parameters
                scope = {n: {(_NET, n)} for n in self.net_names} | bound
                bound[param.name] = self.deps(param.default, scope)
        for kind, name in self.summary(block):
            hard |= bound.get(name, set()) if kind == _ARG else {(kind, name)}

    def summary(self, block: ir.Block) -> set:
        if block.name in self.summaries:
            return self.summaries[block.name]
        if block.name in self.active:  # recursion: elaboration refuses it; be conservative
            return {(_NET, n) for n in self.net_names}
        self.active.add(block.name)
        env = {n: {(_NET, n)} for n in self.net_names}
        env.update({p.name: {(_ARG, p.name)} for p in block.params})
        hard: set = set()
        self.body(block.body, env, hard)
        self.active.discard(block.name)
        self.summaries[block.name] = hard
        return hard

    def names(self) -> set[str]:
        return {name for kind, name in self.hard if kind == _NET}


class Writes:
    """The generator's record of what it wrote, as far as parameters are concerned."""

    def __init__(self) -> None:
        self.frozen: set[str] = set()

    def literal(self, form: Any) -> None:
        """A value written as a constant: everything it depends on is frozen."""
        self.frozen |= deps_of(form)

    def expression(self, written: Any, form: Any) -> None:
        """A value written as an expression whose form is ``written``."""
        if not same(written, form):
            self.frozen |= deps_of(written) | deps_of(form)


class Dependence:
    """Forms of every node's shape and arguments and of every block instance's arguments."""

    def __init__(self, gen: "Generator"):
        self.gen = gen
        net = gen.net
        self.all = frozenset(net.params)
        self.net_forms: dict[str, Form] = {n: parameter(n, v) for n, v in net.params.items()}
        self.box_forms: dict[str, dict[str, Form]] = {"": dict(self.net_forms)}
        self.shapes: dict[int, tuple] = {}
        self.args: dict[int, dict[str, Form]] = {}
        self.defaulted = _defaulted(net.ir, gen.block_ir.values())
        self.shortcut_of: dict[int, Any] = {}  # node of an automatic shortcut -> its unit
        for unit in gen.units:
            path = gen.shortcut_path(unit)
            if unit.shortcut == "zero-pad":
                self.shortcut_of[op_node(gen.graph, unit.merge).inputs[1]] = unit
            elif path is not None and unit.stmt.shortcut is None:
                for node in self._nodes_in(path):
                    self.shortcut_of[node] = unit
        for data in op_nodes(gen.graph):
            node = data.id
            self.node(node, data)

    def _nodes_in(self, path: str) -> list[int]:
        return [ref for kind, ref in self.gen.children[path] if kind == "node"]

    # -- environments -------------------------------------------------------------
    def env(self, path: str) -> dict[str, Form]:
        """Forms of the names visible in container ``path`` (its owner's parameters)."""
        owner = self.gen.owner(path)
        if owner not in self.box_forms:
            self.box_forms[owner] = {**self.net_forms, **self.bound(owner)}
        return self.box_forms[owner]

    def bound(self, path: str) -> dict[str, Form]:
        box = self.gen.boxes[path]
        block = self.gen.block_ir.get(box.block or "")
        if block is None:  # pragma: no cover - every instance has its definition
            return {n: unknown(v, self.all) for n, v in box.args.items()}
        parent = self.env(path.rsplit(".", 1)[0] if "." in path else "")
        given = self.gen.call_exprs(path)
        result: dict[str, Form] = {}
        for param in block.params:
            expr = given.get(param.name, param.default)
            scope = parent if param.name in given else {**self.net_forms, **result}
            form = self.evaluate(expr, scope, box.args.get(param.name)) if expr is not None else None
            if param.type == "float" and isinstance(form, Sym):
                form = as_kind(form, "float", 0)
            value = box.args.get(param.name)
            if form is None or value_of(form) != value or type(value_of(form)) is not type(value):
                form = unknown(value, self.all)
            result[param.name] = form
        return result

    def evaluate(self, expr: ir.Expr, env: dict[str, Form], value: Any) -> Form:
        try:
            return evaluate_form(expr, env)
        except (ArithmeticError, TypeError, KeyError):  # pragma: no cover - elaboration accepted it
            return unknown(value, self.all)

    # -- nodes ---------------------------------------------------------------------
    def node(self, node: int, data: dict) -> None:
        shape = data.shape
        if not data.inputs:  # the network's input
            exprs = self.gen.net.ir.input.shape
            forms = tuple(self.evaluate(e, self.net_forms, v) for e, v in zip(exprs, shape)) \
                if len(exprs) == len(shape) else None
            self.shapes[node] = self._checked(forms, shape)
            self.args[node] = {}
            return
        spec = REGISTRY[data.op]
        ins = [self.shapes[i] for i in data.inputs]
        if node in self.shortcut_of:
            args = self.shortcut_args(node, data, self.shortcut_of[node])
        elif spec.merge_code is not None:
            args = self.merge_args(data)
        else:
            args = self.op_args(node, data, spec)
        self.args[node] = args
        try:
            raw = {k: v if isinstance(v, (Sym, tuple)) else value_of(v) for k, v in args.items()}
            out = spec.infer(ins, raw) if spec.merge_code is not None else spec.infer(ins[0], raw)
        except Exception:  # noqa: BLE001 - a rule that cannot run on forms: nothing is proved
            out = None
        loose = frozenset().union(*(deps_of(v) for v in args.values() if not isinstance(v, (Sym, tuple))),
                                  *(deps_of(s) for s in ins))
        forms = None if out is None else tuple(d if isinstance(d, Sym) else unknown(d, loose) for d in out)
        self.shapes[node] = self._checked(forms, shape)

    def _checked(self, forms: tuple | None, shape: tuple) -> tuple:
        """Forms whose values are the graph's; anything else is not understood."""
        if forms is None or tuple(int(f) for f in forms) != tuple(shape):
            return tuple(unknown(v, self.all) for v in shape)
        return forms

    def op_args(self, node: int, data: dict, spec: Any) -> dict[str, Form]:
        stmt = data.stmt
        if not isinstance(stmt, ir.Apply) or stmt.name != data.op:  # pragma: no cover - made
            return {k: unknown(v, self.all) for k, v in data.args.items()}  # by no statement
        env = self.env(data.container)
        exprs = self.gen.arg_exprs(node)
        rank = len(data.in_shapes[0]) - 1
        bound: dict[str, Form] = {}
        for arg in spec.args:
            value = data.args[arg.name]
            if arg.variadic:  # the rest of the positional values, one form each
                tail = [a.value for a in stmt.args if a.name is None][len(spec.positional) - 1:]
                form = tuple(self.evaluate(e, env, v) for e, v in zip(tail, value))
            elif arg.name in exprs:
                form = as_kind(self.evaluate(exprs[arg.name], env, value), arg.kind, rank)
            elif callable(arg.default):
                try:
                    form = arg.default(bound)
                except Exception:  # noqa: BLE001 - a default that cannot run on forms
                    form = unknown(value, deps_of(tuple(bound.values())) or self.all)
            elif arg.default is REQUIRED:  # pragma: no cover - bind() refused it
                form = unknown(value, self.all)
            else:
                form = constant(value)
            if value_of(form) != value:
                # A ``defaults`` statement gave it: every parameter reaching one is frozen
                # (Flow), so the value is a constant for the live ones.
                form = constant(value) if (spec.name, arg.name) in self.defaulted else unknown(value, self.all)
            bound[arg.name] = form
        return bound

    def merge_args(self, data: dict) -> dict[str, Form]:
        options = {o.name: o.value for o in getattr(data.stmt, "options", ())}
        env = self.env(data.container)
        args: dict[str, Form] = {}
        for name, value in data.args.items():
            form = self.evaluate(options[name], env, value) if name in options else constant(value)
            form = as_kind(form, "float", 0) if type(value) is float else form
            args[name] = form if value_of(form) == value else unknown(value, self.all)
        return args

    def shortcut_args(self, node: int, data: dict, unit: Any) -> dict[str, Form]:
        """An automatic shortcut's arguments, which elaboration derives from the shapes:
        its width (the body's channels), its stride (the sizes' ratio), its padding
        channels (their difference); every other argument is a constant of the recipe."""
        source, target = self.shapes[unit.input], self.shapes[unit.body_output]
        spec = REGISTRY[data.op]
        args: dict[str, Form] = {}
        for name, value in data.args.items():
            if name in spec.width_args:
                form: Any = target[0]
            elif name == "stride":
                form = tuple(_stride(a, b) for a, b in zip(source[1:], target[1:]))
            elif type(value) is int and value == int(target[0]) - int(source[0]):
                form = target[0] - source[0]  # a zero-pad's channels (or, conservatively, a coincidence)
            else:
                form = constant(value)
            args[name] = form if value_of(form) == value else unknown(value, self.all)
        return args

    # -- structure -----------------------------------------------------------------------
    def decisions(self) -> set[str]:
        """Parameters on which an automatic shortcut's choice (identity or not) depends."""
        found: set[str] = set()
        for unit in self.gen.units:
            stmt = unit.stmt
            if unit.shortcut not in ("identity", "projection", "zero-pad") or stmt.shortcut is not None:
                continue
            if self.policy(stmt, unit.container) in ("identity", "C"):  # the same for every shape
                continue
            a, b = self.shapes[unit.input], self.shapes[unit.body_output]
            if len(a) != len(b) or _decided(a, b):
                continue
            found |= deps_of(a) | deps_of(b)
        return found

    def policy(self, stmt: ir.Residual, container: str) -> str:
        if self.gen.net.shortcut is not None and not self.gen.net.plain:
            return self.gen.net.shortcut  # forced by the caller (load(..., shortcut=...))
        for option in stmt.options:
            if option.name == "shortcut":  # its parameters are frozen (Flow): a constant
                return str(value_of(self.evaluate(option.value, self.env(container), None)))
        return "auto"


def _decided(a: tuple, b: tuple) -> bool:
    """Whether ``a == b`` has one answer for every parameter value: some dimension
    differs by a nonzero constant, or every dimension is proved equal."""
    if all(same(x, y) for x, y in zip(a, b)):
        return True
    return any((x - y).constant and int(x) != int(y) for x, y in zip(a, b))


def _stride(size: Sym, out: Sym) -> Form:
    """The stride that turns ``size`` into ``out`` (see the module docstring)."""
    value = -(-int(size) // int(out))
    if same(size, out):
        return constant(1)
    if key_of(out) == key_of((size + 1) // 2) and value == 2:
        return constant(2)
    if not (size.deps | out.deps):
        return constant(value)
    return unknown(value, size.deps | out.deps)


def _defaulted(network: ir.Network, blocks: Iterable[ir.Block]) -> set[tuple[str, str]]:
    """(op, argument) pairs some ``defaults`` statement sets."""
    found: set[tuple[str, str]] = set()

    def walk(stmts) -> None:
        for stmt in stmts:
            if isinstance(stmt, ir.Defaults):
                found.update((stmt.op, a.name) for a in stmt.args if a.name)
            for body in ir.bodies(stmt):
                walk(body)

    walk(network.body)
    for block in blocks:
        walk(block.body)
    return found

