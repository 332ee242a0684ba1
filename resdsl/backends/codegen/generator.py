"""The generator: one class per definition, rendered instance by instance.

How a block definition with structurally different instances becomes one class:
every instance is rendered with the spec's own expressions over the block's
parameters, checked against that instance's values; instances whose text is the
same share a class. An automatic ``downsample`` projection that only some
instances need becomes an optional submodule with a ``None`` check, as in
torchvision's ``Bottleneck``. Instances that still differ (an option-A shortcut in
some instances only) get numbered variant classes (``Basic``, ``Basic_2``).

:class:`Generator` is assembled from mixins, one concept each: :class:`~.plan.Plan`
(indexes, what becomes a class, names and signatures), :class:`~.constructors.Constructors`
(``__init__``), :class:`~.forward.ForwardWriter` (``forward``), :class:`~.assemble.Assembler`
(the text). Which parameters stay live is decided on the way (:mod:`.params`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import networkx as nx

from ... import ir
from ...graph import containers, op_node, residual_units
from ...ops import REGISTRY
from .assemble import Assembler
from .constructors import Constructors
from .forward import ForwardWriter, Op
from .params import Dependence, Flow, Writes
from .plan import Plan
from .text import IN, INDENT, RESERVED, Call, Cond, camel, names, pyname, safe_file, statement


class CompiledSpec(Protocol):
    """What code generation reads of a checked network (:class:`resdsl.api.Net` has it)."""

    name: str
    ir: ir.Network
    graph: nx.DiGraph
    filename: str
    params: Mapping[str, Any]
    blocks: Mapping[str, ir.Block]
    plain: bool
    shortcut: str | None


@dataclass
class ClassInfo:
    """A generated class (one variant of one definition) and how to call it."""

    name: str
    body: str  # the class body text, without the ``class`` line
    params: list[tuple[str, str, str, str | None]]  # (spec name, py name, type, default literal)
    net_params: list[str]  # network parameters its code needs (passed by name)
    flags: list[tuple[str, str]]  # (py name, unit key) of optional shortcut submodules
    out_sym: ir.Expr | None  # output channels in terms of its own names
    first_path: str
    doc: str


@dataclass
class Rendered:
    body: str
    params: list[tuple[str, str, str, str | None]]
    net_params: list[str]
    flags: list[tuple[str, str]]
    out_sym: ir.Expr | None
    flag_values: dict[str, bool]
    placeholders: dict[str, str]  # placeholder token -> unit key (lines to fill from a sibling)
    filled: dict[str, list[str]]  # unit key -> __init__ lines of this instance's optional shortcut


class Generator(Plan, Constructors, ForwardWriter, Assembler):
    """Renders every container of one net; see :func:`resdsl.backends.codegen.generate`."""

    def __init__(self, net: CompiledSpec, inference: Any = None):
        self.net = net
        # The inference build (an InferencePlan): its rewritten graph stands in for the net's.
        self.inference = inference
        self.graph = net.graph if inference is None else inference.graph
        self.boxes = containers(self.graph)
        self.file = safe_file(net.filename)
        self.frozen: dict[str, Any] = {}
        self.block_ir: dict[str, ir.Block] = dict(net.blocks)
        for block in net.ir.blocks:
            self.block_ir.setdefault(block.name, block)
        self.net_types = {p.name: p.type for p in net.ir.params}
        self.helpers: set[str] = set()
        self.uses_functional = False
        self.uses_ordered_dict = False
        self.class_of: dict[str, ClassInfo] = {}
        self.classes: list[ClassInfo] = []
        self.taken_class_names: set[str] = set(RESERVED)
        # A class is called by name inside __init__ bodies whose arguments are spec
        # parameters: a parameter named like a class (``Unit`` beside block ``unit``) would
        # shadow it, so class names avoid every parameter name.
        for params in [net.ir.params] + [block.params for block in self.block_ir.values()]:
            self.taken_class_names |= {p.name for p in params} | {pyname(p.name) for p in params}
        self.unit_kinds: dict[str, set[str]] = {}
        self.unit_local: dict[str, str] = {}
        self.units = residual_units(self.graph)
        # A shortcut=none unit has no merge: its "merge" is its body's output, which may be
        # another unit's real merge (a block ending in a residual), so it must not be mapped.
        self.units_by_merge = {u.merge: u for u in self.units if u.shortcut != "none"}
        self.children = self._children()
        self.flag_values: dict[str, dict[str, bool]] = {}
        # Units by their container and by their projection's container, so each lookup is
        # one dict access (a scan of every unit per container made generation quadratic).
        self.units_in: dict[str, list] = {}
        self.units_of_shortcut: dict[str, list] = {}
        for unit in self.units:
            self.units_in.setdefault(unit.container, []).append(unit)
            path = self.shortcut_path(unit)
            if path is not None:
                self.units_of_shortcut.setdefault(path, []).append(unit)
        # What decides the frozen parameters: the structure (IR), the shapes (forms), and
        # what the code writes (recorded as it is written).
        self.writes = Writes()
        self.dependence = Dependence(self)
        self.structural = Flow(net.ir, self.block_ir).names() | self.dependence.decisions()

    # -- definitions, bottom-up ----------------------------------------------------------
    def run(self) -> str:
        self.scan_units()
        order: list[str] = []
        instances: dict[str, list[str]] = {}
        for path in self.boxes:
            key = self.def_key(path)
            if key is not None:
                instances.setdefault(key, []).append(path)
        nested: dict[str, set[str]] = {key: set() for key in instances}
        for path in self.boxes:
            key = self.def_key(path)
            if key is not None and path:
                nested[self._owner_key(path)].add(key)
        done: set[str] = set()
        position = {path: index for index, path in enumerate(self.boxes)}

        def visit(key: str) -> None:  # definitions used inside another come first
            if key in done:
                return
            done.add(key)
            for child in sorted(nested[key], key=lambda k: position[instances[k][0]]):
                visit(child)
            order.append(key)

        visit("network")
        for key in order:
            self.define(key, instances[key])
        return self.assemble()

    def define(self, key: str, paths: list[str]) -> None:
        rendered = [(path, self.render(path)) for path in paths]
        fills: dict[str, list[str]] = {}
        for _, r in rendered:
            for unit_key, lines in r.filled.items():
                fills.setdefault(unit_key, lines)
        variants: dict[str, ClassInfo] = {}
        for path, r in rendered:
            body = r.body
            for token, unit_key in r.placeholders.items():
                # An instance that has the optional unit must run its own code for it: if
                # that code differs from another instance's, the bodies differ and the
                # instances get separate variant classes. Instances without it borrow one.
                lines = r.filled.get(unit_key) or fills[unit_key]
                body = body.replace(token, "\n".join(lines))
            info = variants.get(body)
            if info is None:
                info = self.new_class(key, path, body, r, len(variants))
                variants[body] = info
            self.class_of[path] = info
            self.flag_values[path] = r.flag_values

    def new_class(self, key: str, path: str, body: str, r: Rendered, variant: int) -> ClassInfo:
        box = self.boxes[path]
        if box.kind == "network":
            base, doc = camel(self.net.name), f"Network ``{self.net.name}`` ({self.where(box.span)})."
        elif box.kind == "block":
            definition = self.block_ir[box.block].span if box.block in self.block_ir else box.span
            base, doc = camel(box.block), f"Block ``{box.block}`` ({self.where(definition)})."
        else:
            owner = self.class_of_owner(path)
            base = owner + camel(self._local(path))
            doc = f"The {box.kind} ``{self._local(path)}`` of {owner} ({self.where(box.span)})."
        name = base if variant == 0 else f"{base}_{variant + 1}"
        while name in self.taken_class_names:
            name += "_"
        self.taken_class_names.add(name)
        info = ClassInfo(name, body, r.params, r.net_params, r.flags, r.out_sym, path, doc)
        self.classes.append(info)
        return info

    def eval_neutral(self, node: int) -> set[str]:
        """The arguments of ``node`` the inference build set (a folded conv's ``bias``, a
        residual's ``drop_path``): written from their values, not the spec's expressions."""
        if self.inference is None:
            return set()
        return set(self.inference.rewritten.get(node, ()))

    def frozen_params(self) -> dict[str, Any]:
        """The parameters the code does not follow, in the spec's order (see :mod:`.params`);
        complete once every class below the network is written."""
        frozen = self.structural | self.writes.frozen
        return {name: value for name, value in self.net.params.items() if name in frozen}

    # -- one container instance ------------------------------------------------------------
    def render(self, path: str) -> Rendered:
        box = self.boxes[path]
        ctx = self.context(path)
        chan: dict[int, ir.Expr | None] = {}
        if box.kind == "network":
            in_shape = op_node(self.graph, box.input).shape
            expr = self.net.ir.input.shape[0] if self.net.ir.input.shape else None
            chan[box.input] = ctx.sym(expr, in_shape[0]) or ir.IntLit(value=in_shape[0])
        else:
            chan[box.input] = ir.NameRef(name=IN)
        init: list[str] = []
        ops: list[Op] = []
        flags: list[tuple[str, str]] = []
        flag_values: dict[str, bool] = {}
        placeholders: dict[str, str] = {}
        filled: dict[str, list[str]] = {}
        calls: dict[str, Call] = {}
        inner = INDENT * 2
        for unit in self.units_in.get(path, ()):  # optional shortcuts of this container
            if self.mixed(unit):
                ukey = self._unit_key(unit)
                local = self.unit_local[ukey]
                flag = pyname(local, set(ctx.py.values()) | RESERVED | {f for f, _ in flags})
                flags.append((flag, ukey))
                flag_values[flag] = unit.shortcut == "projection"
        starts: dict[Any, int] = {}  # step -> where its __init__ lines begin
        # attribute names this class sets: its children's, and the merges' (self.drop_path)
        taken = {self._local(ref) if kind == "child" else (op_node(self.graph, ref).module or "").rsplit(".", 1)[-1]
                 for kind, ref in self.children[path]} | RESERVED
        shortcut_lines: dict[int, tuple[int, int]] = {}  # merge -> its shortcut's __init__ lines
        for kind, ref in self.children[path]:
            starts[ref] = len(init)
            if kind == "child":
                child_box = self.boxes[ref]
                if self._mixed_unit_of_shortcut(ref) is not None:
                    continue  # written by its merge, as an optional submodule
                call = self.child_call(ref, ctx, chan)
                comment = f"# {self.where(child_box.span)}"
                init += statement(f"self.{self._local(ref)}", call, inner, comment)
                ops.append(Op(child_box.output, (child_box.input,), child_box.span,
                              lambda v, r=ref: f"self.{self._local(r)}({v[0]})", kind="child",
                              local=self._local(ref)))
                continue
            data = op_node(self.graph, ref)
            if REGISTRY[data.op].written_inline is not None:  # a merge, or an op without a module
                chan[ref] = self.merge_chan(ref, ctx, chan)
                unit = self.units_by_merge.get(ref)
                if unit is not None and self.mixed(unit) and unit.container == path:
                    ukey = self._unit_key(unit)
                    flag = next(f for f, k in flags if k == ukey)
                    local = self.unit_local[ukey]
                    token = f"\0{ukey}\0"
                    sc_path = self.shortcut_path(unit)
                    if sc_path is not None:
                        seq = self.sequential(sc_path, ctx, chan)
                        filled[ukey] = statement(f"self.{local}", Cond(seq, flag), inner,
                                                 f"# {self.where(unit.span)}")
                    placeholders[token] = ukey
                    shortcut_lines[ref] = (len(init), len(init) + 1)
                    init.append(token)
                    attributes = self._merge_attributes(ref, ctx, init, inner, taken)
                    ops.append(self.merge_op(ref, optional=local, inputs=(unit.body_output, unit.input),
                                             attributes=attributes))
                else:  # forward sees no __init__ arguments: its values are literals or attributes
                    ops.append(self.merge_op(ref, attributes=self._merge_attributes(ref, ctx, init, inner, taken)))
                continue
            local = self._local(data.module)
            calls[local] = self.ctor(ref, ctx, chan)
            init += statement(f"self.{local}", calls[local], inner, f"# {self.where(data.span)}")
            for spec in REGISTRY[data.op].args:  # a tied weight: that layer's tensor, shared
                if spec.kind == "tie" and data.args.get(spec.name) is not None:
                    init.append(f"{inner}self.{local}.weight = self.{self._local(data.args[spec.name])}.weight")
            if REGISTRY[data.op].source:  # a learnable tensor: read, not called
                rhs = lambda v, local=local: f"self.{local}"  # noqa: E731
            elif REGISTRY[data.op].call is not None:  # called its own way (attention: q, k, v)
                rhs = lambda v, local=local, ref=ref: self.call_expr(ref, local, v)  # noqa: E731
            else:
                rhs = lambda v, local=local: f"self.{local}({v[0]})"  # noqa: E731
            ops.append(Op(ref, tuple(data.inputs), data.span, rhs, kind="module",
                          local=local, in_place=REGISTRY[data.op].in_place))
        init = self._arranged(path, init, starts, shortcut_lines)
        forward, inplace = self.forward(path, ops, box)
        init = self._in_place(init, inplace, calls)
        if box.kind == "network" and self.inference is not None:
            init, forward = self._eval_only(init, forward, box)
        out_sym = chan.get(box.output)
        params = self.signature_of(path, ctx)
        net_params = [n for n in sorted(ctx.used & ctx.net_params)
                      if box.kind != "network" and not self._is_block_param(path, n)]
        if box.kind in ("residual", "shortcut", "sequential", "stage"):  # parts of a block take its names they use
            params += [(n, ctx.py[n], self._type_of(path, n), None)
                       for n in sorted(ctx.used - ctx.net_params - {IN})]
        if box.kind == "network":  # written last: every value below is recorded by now
            self.frozen = self.frozen_params()
        body = self.class_body(path, ctx, params, net_params, flags, init, forward)
        return Rendered(body, params, net_params, flags, out_sym, flag_values, placeholders, filled)

    def _eval_only(self, init: list[str], forward: list[str], box: Any) -> tuple[list[str], list[str]]:
        """The inference build's network class: eval mode from ``__init__`` on, and for a conv
        net the weights and the input in channels-last memory format (the output, when it is
        a map, handed back in the usual one)."""
        inner, fmt = INDENT * 2, self.inference.memory_format
        if fmt is None:
            return init + [f"{inner}self.eval()  # eval only: norms are folded"], forward
        init = init + [f"{inner}self.to(memory_format=torch.{fmt})  # the kernels' fast layout",
                       f"{inner}self.eval()  # eval only: norms are folded"]
        name = forward[0].split("(self, ", 1)[1].split(":", 1)[0]
        forward = [forward[0], f"{inner}{name} = {name}.contiguous(memory_format=torch.{fmt})"] + forward[1:]
        rank = len(op_node(self.graph, box.input).shape)
        if len(op_node(self.graph, box.output).shape) == rank and forward[-1].startswith(f"{inner}return "):
            forward[-1] += ".contiguous()"
        return init, forward

    def _merge_attributes(self, node: int, ctx, init: list[str], indent: str, taken: set[str]) -> dict:
        """A merge's float options written with the instance's own names (``drop_path=p``)
        become attributes set in ``__init__`` (``self.drop_path = p``), so that blocks whose
        stochastic-depth rates differ share one class; literal options stay literals."""
        data = op_node(self.graph, node)
        stmt = data.stmt
        found: dict[str, str] = {}
        for option in getattr(stmt, "options", ()) if isinstance(stmt, ir.Residual) else ():
            if option.name not in ("drop_path", "scale") or option.name not in data.args or \
                    option.name in self.eval_neutral(node):
                continue
            sym = ctx.sym(option.value, data.args[option.name], "float")
            if sym is None or not names(sym):
                continue
            attribute = pyname(option.name, taken)
            taken.add(attribute)
            text = ctx.expr(option.value, data.args[option.name], self.dependence.args[node].get(option.name), "float")
            init.append(f"{indent}self.{attribute} = {text}  # {self.where(stmt.span)}")
            found[option.name] = f"self.{attribute}"
        return found

    def _arranged(self, path: str, init: list[str], starts: dict, shortcut_lines: dict) -> list[str]:
        """The __init__ lines in registration order, which fixes the state dict's order:
        each ``shortcut_first`` unit's shortcut before its body (RegNet's ``proj`` before
        ``f``), then the submodules an ``order`` statement lists first, in that order. Lines
        move as whole pieces (a step's lines, or an optional shortcut's placeholder), so one
        move never leaves the other with stale positions."""
        order = self.boxes[path].order
        units = [u for u in self.units_in.get(path, ())
                 if u.shortcut_first and (u.shortcut in ("projection", "explicit") or self.mixed(u))]
        if not order and not units:
            return init
        cuts: dict[int, Any] = {begin: step for step, begin in starts.items()}  # a later step owns the lines
        for merge, (begin, end) in shortcut_lines.items():
            cuts[begin] = ("placeholder", merge)
            cuts.setdefault(end, merge)  # the merge's own lines after its placeholder
        bounds = sorted(cuts)
        pieces = [(a, cuts[a], init[a:b]) for a, b in zip(bounds, bounds[1:] + [len(init)])]
        for unit in units:
            moved = ("placeholder", unit.merge) if unit.merge in shortcut_lines else \
                op_node(self.graph, op_node(self.graph, unit.merge).inputs[1]).container
            body = self._step_of(path, unit.first, starts)
            keys = [key for _, key, _ in pieces]
            if body is None or moved not in keys:
                continue
            from_index = keys.index(moved)
            to_index = next(i for i, (begin, _, _) in enumerate(pieces) if begin >= starts[body])
            if to_index < from_index:  # the body is registered before its shortcut: swap them
                pieces.insert(to_index, pieces.pop(from_index))
        if order:
            local = {key: self._local(key) if isinstance(key, str) else
                     (op_node(self.graph, key).module or "").rsplit(".", 1)[-1]
                     for _, key, _ in pieces if not isinstance(key, tuple)}
            first = [piece for name in order for piece in pieces
                     if not isinstance(piece[1], tuple) and local[piece[1]] == name]
            pieces = first + [piece for piece in pieces if piece not in first]
        return [line for _, _, lines in pieces for line in lines]

    def _step_of(self, path: str, node: int, starts: dict) -> Any:
        """The step of container ``path`` (a node, or a child container) holding ``node``."""
        if node in starts:
            return node
        where = op_node(self.graph, node).container
        while where and where != path:
            if where in starts:
                return where
            where = where.rsplit(".", 1)[0] if "." in where else ""
        return None

    @staticmethod
    def _in_place(init: list[str], inplace: set[str], calls: dict[str, Call]) -> list[str]:
        """Constructors of modules that run in place get ``inplace=True`` (one-line calls:
        a module that takes it, an activation, is short)."""
        for local in sorted(inplace):
            call = calls[local]
            plain = f"self.{local} = {call.flat()}"
            with_flag = f"self.{local} = {Call(call.func, call.args + ['inplace=True']).flat()}"
            init = [line.replace(plain, with_flag) if line.lstrip().startswith(plain) else line
                    for line in init]
        return init

