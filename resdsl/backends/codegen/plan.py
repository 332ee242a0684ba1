"""Planning: which containers become classes, which statement made each node, which
names an instance's code sees, and the signature of each class.

A mixin of :class:`~.generator.Generator`; it reads the graph, the IR and the
indexes the generator builds in ``__init__``.
"""

from __future__ import annotations

from typing import Any

from ... import ir
from ...errors import Problem
from ...expr import evaluate
from ...graph import op_node, op_nodes
from ...ops import REGISTRY
from ...elaborate.sequential import is_sequential_block
from .context import Ctx
from .forms import deps_of, unknown
from .text import IN, RESERVED, camel, coerce, let_source, lit, mentioned, names, pyname, safe_file



class Plan:
    """Indexes and lookups over the graph and the IR (see :class:`~.generator.Generator`)."""

    # -- indexes --------------------------------------------------------------------
    def _children(self) -> dict[str, list[tuple[str, Any]]]:
        """Per container, its steps in graph order: ("node", id) or ("child", path)."""
        steps: dict[str, list[tuple[str, Any]]] = {path: [] for path in self.boxes}
        seen: set[tuple[str, str]] = set()
        for data in op_nodes(self.graph):
            node = data.id
            if data.module is None:
                continue
            where = data.container
            steps[where].append(("node", node))
            path = where
            while path:  # register the chain of containers up to the root
                parent = path.rsplit(".", 1)[0] if "." in path else ""
                if (parent, path) not in seen:
                    seen.add((parent, path))
                    steps[parent].append(("child", path))
                path = parent
        return steps  # a child enters at its first node: graph (creation) order

    def def_key(self, path: str) -> str | None:
        """The definition a container instantiates (None: written inline by its parent)."""
        box = self.boxes[path]
        if box.kind == "network":
            return "network"
        if box.kind == "block":
            if self._sequential_block(path):
                return None  # a block that is an nn.Sequential (conv-norm-activation): inline
            return f"block:{box.block}"
        if box.kind in ("stage", "sequential") and self._chain(path):
            return None  # an inline nn.Sequential(...), with an OrderedDict of its names if not 0, 1, 2
        if box.kind == "shortcut" and self._simple_shortcut(path):
            return None
        return f"{box.kind}:{box.span.line}:{box.span.column}:{self._owner_key(path)}"

    def where(self, span: Any) -> str:
        """``file:line`` for a comment: the file the statement is written in (an imported
        block's own file), by base name."""
        return f"{safe_file(span.file)}:{span.line}"

    def _owner_key(self, path: str) -> str:
        while path:
            path = path.rsplit(".", 1)[0] if "." in path else ""
            key = self.def_key(path)
            if key is not None:
                return key
        return "network"

    def owner(self, path: str) -> str:
        """The block instance (or the network, ``""``) whose parameters ``path`` sees."""
        while path and self.boxes[path].kind not in ("block", "network"):
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return path

    def _simple_shortcut(self, path: str) -> bool:
        items = self.children[path]
        box = self.boxes[path]
        prev = box.input
        for index, (kind, ref) in enumerate(items):
            if kind != "node":
                return False
            data = op_node(self.graph, ref)
            if REGISTRY[data.op].written_inline is not None or REGISTRY[data.op].call is not None or \
                    data.module.rsplit(".", 1)[-1] != str(index) or data.inputs != (prev,):
                return False
            prev = ref
        return bool(items) and prev == box.output

    def _sequential_block(self, path: str) -> bool:
        block = self.block_ir.get(self.boxes[path].block or "")
        return block is not None and is_sequential_block(block) and \
            self._chain(path)

    def _positional(self, path: str) -> bool:
        """Whether a container's children are named 0, 1, 2, ... in order (nn.Sequential)."""
        locals_ = [self._local(ref) if kind == "child" else
                   op_node(self.graph, ref).module.rsplit(".", 1)[-1] for kind, ref in self.children[path]]
        return locals_ == [str(i) for i in range(len(locals_))]

    def _numbered(self, path: str) -> bool:
        """Whether a container's children are numbered in increasing order: 0, 1, 2, ..., or
        with gaps where the inference build left a module out (0, 2: an ``OrderedDict``)."""
        locals_ = [self._local(ref) if kind == "child" else
                   op_node(self.graph, ref).module.rsplit(".", 1)[-1] for kind, ref in self.children[path]]
        return all(name.isdigit() for name in locals_) and \
            [int(name) for name in locals_] == sorted({int(name) for name in locals_})

    def _chain(self, path: str) -> bool:
        """Whether each child of a container takes the previous one's output."""
        box = self.boxes[path]
        prev = box.input
        for kind, ref in self.children[path]:
            if kind == "child":
                child = self.boxes[ref]
                if child.input != prev:
                    return False
                prev = child.output
            else:
                data = op_node(self.graph, ref)
                if REGISTRY[data.op].merge_code is not None or REGISTRY[data.op].call is not None or \
                        data.inputs != (prev,):
                    return False
                prev = ref
        return prev == box.output

    def _local(self, path: str) -> str:
        return path.rsplit(".", 1)[-1]

    # -- residual units ------------------------------------------------------------------
    def _unit_key(self, unit) -> str:
        return f"{self._owner_key(unit.container + '.x') if unit.container else 'network'}:" \
               f"{unit.span.line}:{unit.span.column}"

    def shortcut_path(self, unit) -> str | None:
        if unit.shortcut != "projection":
            return None
        return op_node(self.graph, op_node(self.graph, unit.merge).inputs[1]).container

    def scan_units(self) -> None:
        for unit in self.units:
            key = self._unit_key(unit)
            self.unit_kinds.setdefault(key, set()).add(unit.shortcut)
            path = self.shortcut_path(unit)
            if path is not None:
                self.unit_local.setdefault(key, self._local(path))

    def mixed(self, unit) -> bool:
        return self.unit_kinds.get(self._unit_key(unit)) == {"identity", "projection"}

    def _mixed_unit_of_shortcut(self, path: str):
        box = self.boxes[path]
        if box.kind != "shortcut":
            return None
        for unit in self.units_of_shortcut.get(path, ()):
            if self.mixed(unit):
                return unit
        return None

    # -- statements behind nodes ----------------------------------------------------------
    def call_exprs(self, path: str) -> dict[str, ir.Expr]:
        """The spec's argument expressions of a block call (a stage's first instance gets its stride)."""
        box = self.boxes[path]
        if box.kind != "block":
            return {}
        parent = self.boxes.get(path.rsplit(".", 1)[0] if "." in path else "")
        stmt = box.stmt
        block = self.block_ir.get(box.block)
        if stmt is None or block is None or not hasattr(stmt, "args"):
            return {}
        exprs = ir.args_by_name(stmt.args, [p.name for p in block.params])
        if isinstance(stmt, ir.Stage) and parent is not None and parent.kind == "stage" and \
                self._local(path) == "0":
            for option in stmt.options:
                if option.name == "stride":
                    exprs["stride"] = option.value
        return exprs

    def arg_exprs(self, node: int) -> dict[str, ir.Expr]:
        data = op_node(self.graph, node)
        stmt = data.stmt
        if not isinstance(stmt, ir.Apply) or stmt.name != data.op:  # a shortcut or merge of a residual
            return {}
        # A variadic positional (permute's dims) has no one expression: see Dependence.op_args.
        return ir.args_by_name(stmt.args, [spec.name for spec in REGISTRY[data.op].positional
                                           if not spec.variadic])

    # -- names an instance sees, and class signatures ----------------------------------------
    def context(self, path: str) -> Ctx:
        box = self.boxes[path]
        net_params = dict(self.net.params)
        net_forms = self.dependence.net_forms
        if box.kind == "network":
            py = {n: pyname(n) for n in net_params}
            return Ctx(dict(net_params), py, set(net_params), self.writes, dict(net_forms), path=path)
        owner = self.owner(path)
        bound = dict(self.boxes[owner].args) if self.boxes[owner].kind == "block" else {}
        if self.boxes[owner].kind == "block":  # a block sees the network parameters it names
            block = self.block_ir.get(self.boxes[owner].block)
            seen = mentioned(block.body) if block is not None else set()
            net_params = {n: v for n, v in net_params.items() if n in seen}
        env = {**net_params, **bound}
        owner_forms = self.dependence.env(path)
        forms = {n: owner_forms[n] for n in env}
        py = {n: pyname(n) for n in env}
        taken = set(py.values()) | RESERVED
        env[IN] = op_node(self.graph, box.input).shape[0]
        forms[IN] = self.dependence.shapes[box.input][0]
        py[IN] = pyname("in_channels", taken)
        ctx = Ctx(env, py, {n for n in net_params if n not in bound}, self.writes, forms, path=path)
        if self.boxes[owner].kind == "block":
            self._add_lets(owner, ctx, own=owner == path)
        return ctx

    def _add_lets(self, owner: str, ctx: Ctx, own: bool) -> None:
        """The owner block's top-level ``let`` names, where Python can compute them from the
        block's parameters and input channels (``let mid = make_divisible(channels(input) *
        expand, 8)``): the block's class computes them at the top of ``__init__`` (``own``), its
        parts take them as arguments, and instances that differ only in them share a class."""
        box = self.boxes[owner]
        block = self.block_ir.get(box.block or "")
        in_value = op_node(self.graph, box.input).shape[0]
        values = {**box.args, IN: in_value}
        for stmt in block.body if block is not None else ():
            if not isinstance(stmt, ir.Let):
                continue
            text = let_source(stmt.value, ctx.py)
            if text is None:
                continue
            try:
                value = evaluate(stmt.value, values, lambda name, e: (in_value,) if name == "input" else None)
            except Problem:
                continue
            if type(value) not in (int, float):
                continue
            values[stmt.name] = value
            deps = frozenset().union(*(deps_of(ctx.forms[n]) for n in names(stmt.value) | {IN} if n in ctx.forms))
            ctx.env[stmt.name] = value
            ctx.forms[stmt.name] = unknown(value, deps)
            ctx.py[stmt.name] = pyname(stmt.name, set(ctx.py.values()) | RESERVED)
            if own:
                ctx.lets.append((stmt.name, text, stmt.value))

    def _type_of(self, path: str, name: str) -> str:
        while path and self.boxes[path].kind != "block":
            path = path.rsplit(".", 1)[0] if "." in path else ""
        block = self.block_ir.get(self.boxes[path].block or "") if path else None
        for param in block.params if block is not None else ():
            if param.name == name:
                return param.type
        return self.net_types.get(name, "int")

    def _is_block_param(self, path: str, name: str) -> bool:
        box = self.boxes[path]
        return box.kind == "block" and name in box.args

    def signature_of(self, path: str, ctx: Ctx) -> list[tuple[str, str, str, str | None]]:
        box = self.boxes[path]
        if box.kind == "network":
            return [(p.name, ctx.py[p.name], p.type, lit(self.net.params[p.name])) for p in self.net.ir.params]
        params = [(IN, ctx.py[IN], "int", None)]
        if box.kind == "block":
            for p in self.block_ir[box.block].params:
                default = None
                if p.default is not None and not names(p.default):
                    try:
                        default = lit(coerce(evaluate(p.default, {}), p.type))
                    except (Problem, TypeError):
                        default = None
                params.append((p.name, ctx.py[p.name], p.type, default))
        return params

    def class_of_owner(self, path: str) -> str:
        key = self._owner_key(path)
        if key == "network":
            return camel(self.net.name)
        if key.startswith("block:"):
            return camel(key.split(":", 1)[1])
        return "Part"

