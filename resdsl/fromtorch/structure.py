"""One module instance's traced forward -> statements: ops, merges, residuals, labels.

The traced graph is a DAG over the module's children and calls. Each node becomes a
statement (a catalogue op, a merge, a learnable tensor, or a call of a child that is
itself a block or a sequential); an ``add`` whose operands fork from one tensor becomes
``residual:`` with the shortcut the language would choose (identity, its projection,
or an explicit ``shortcut:`` path), and the rest is written as a chain with labels,
``from`` and ``add L`` / ``concat L`` where the data does not flow in a line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import fx, nn

from ..errors import Diagnostic, SpecError, Span
from ..ops import REGISTRY, OpSpec
from ..ops.base import TensorRef, TorchCall
from .recipes import bind_args, coerce_args, recognise_module
from .stmts import (
    FromStmt, MergeStmt, OpStmt, ParamStmt, ResidualStmt, Stmt,
)
from .trace import Traced, Value, call_name, forward_line

#: torchvision's stochastic depth module: a residual's ``drop_path=p`` ("row" mode).
_DROP_PATH = "StochasticDepth"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Node:
    """A tensor-valued step of the forward: what it is and which tensors it reads."""

    name: str
    kind: str  # input | op | merge | param | child | residual
    inputs: list["Node"]
    shape: tuple[int, ...]
    stmt: Any = None  # the statement it becomes (child: filled by the caller)
    child: nn.Module | None = None
    target: str = ""
    order: int = 0
    body: list["Node"] = field(default_factory=list)  # residual: its body nodes
    short: list["Node"] = field(default_factory=list)  # residual: its shortcut nodes
    out: "Node | None" = None  # residual: the body's output (the add's operand)


class Unsupported(Exception):
    """A node from-torch cannot express; ``what`` says which and why."""

    def __init__(self, what: str, hint: str | None = None):
        super().__init__(what)
        self.what, self.hint = what, hint


def unsupported_error(path: str, module: nn.Module, what: str, hint: str | None = None) -> SpecError:
    """The user-facing error: the module path, its type, where its ``forward`` is."""
    where = forward_line(module)
    file, _, line = where.rpartition(":")
    span = Span(file or where, int(line) if line.isdigit() else 0, 1, int(line) if line.isdigit() else 0, 2)
    source = _source_line(span)
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    return SpecError([Diagnostic(
        span, f"module '{path or '(root)'}' ({kind}): {what}", hint=hint, source_line=source,
        notes=(f"its forward is at {where}",),
    )])


def _source_line(span: Span) -> str | None:
    try:
        with open(span.file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if number == span.line:
                    return line.rstrip("\n")
    except OSError:
        return None
    return None


# ---- graph: fx nodes -> Nodes ----------------------------------------------------------
class _Builder:
    def __init__(self, traced: Traced):
        self.traced = traced
        self.values = traced.values
        self.nodes: dict[fx.Node, Node] = {}
        self.used_modules: set[str] = set()
        self.prefixes: dict[tuple[int, ...], Node] = {}
        self.order: list[Node] = []
        # calls that are no op alone, waiting for the one call that reads them: a chain
        # (x.reshape(n, c, h * w).permute(0, 2, 1) is ``tokens``). Each: its TorchCall, the
        # chain's input and the chain's first fx node (named in the error if no op is the chain)
        self.pending: dict[fx.Node, tuple[TorchCall, Node, fx.Node]] = {}

    def build(self) -> tuple[Node, list[Node], Node]:
        entry = output = None
        order: list[Node] = []
        self.order = order
        placeholders = [n for n in self.traced.graph.nodes if n.op == "placeholder" and n.users]
        joined = _joined_at_entry(placeholders)
        for fx_node in self.traced.graph.nodes:
            if fx_node.op == "placeholder":
                if fx_node is (placeholders[0] if placeholders else fx_node) and entry is None:
                    at = joined or fx_node  # a list of tensors concatenated first: the caller joins them
                    entry = Node("input", "input", [], self._shape(at))
                    self.nodes[at] = entry
                elif fx_node.users and joined is None:
                    raise Unsupported("its forward takes more than one input",
                                      "a spec's block takes one tensor")
            elif fx_node is joined:
                continue
            elif fx_node.op == "output":
                source = fx_node.args[0]
                if isinstance(source, (list, tuple)) and len(source) == 1:
                    source = source[0]  # returned as a one-element list (a pytree output)
                if not isinstance(source, fx.Node) or source not in self.nodes:
                    raise Unsupported("its forward does not return one tensor")
                output = self.nodes[source]
            else:
                made = self._node(fx_node)
                for node in made if isinstance(made, list) else [made] if made is not None else []:
                    if node.kind != "input" and not any(node is n for n in order):  # a prefix is placed once
                        node.order = len(order)
                        order.append(node)
                    self.nodes[fx_node] = node
        for call, _, first in self.pending.values():  # read by nothing that completes a chain
            raise _unknown(first, call.name)
        if entry is None or output is None:
            raise Unsupported("its forward takes no tensor or returns none")
        return entry, order, output

    def _shape(self, fx_node: fx.Node) -> tuple[int, ...]:
        value = self.values.get(fx_node)
        if value is None or not value.tensor:
            raise Unsupported(f"'{fx_node.name}' is not a tensor")
        return value.shape

    def _tensor(self, fx_node: fx.Node) -> bool:
        value = self.values.get(fx_node)
        return value is not None and value.tensor

    def _node(self, fx_node: fx.Node) -> Node | None:
        if not self._tensor(fx_node):
            if _is_multi(fx_node, self.values):
                return None  # x.chunk(2, 1): taken apart by the getitem nodes after it
            if _plain(self.values.get(fx_node)):
                return None  # a size, a shape check: its value is read where it is used
            raise Unsupported(f"'{fx_node.format_node()}' gives no tensor and is not a shape check")
        if fx_node.op == "get_attr":
            return self._param(fx_node)
        if fx_node.op == "call_module":
            return self._module(fx_node)
        return self._call(fx_node)

    def _param(self, fx_node: fx.Node) -> Node:
        own = self.traced.module
        tensor = own.get_parameter(fx_node.target) if _is_parameter(own, fx_node.target) else None
        if tensor is None or "." in fx_node.target:
            raise Unsupported(f"reads the tensor '{fx_node.target}', which is not a parameter of its own",
                              "learnable tensors are written as `LABEL: parameter D1, ...` in the block that owns them")
        dims = tuple(tensor.shape)
        flat = tensor.detach().float().flatten()
        constant = bool((flat == flat[0]).all()) if flat.numel() else True
        # [1, N, D] read where its dim 0 is the batch's (torch aligns dims from the right: a
        # result of its rank), as ViT's class token and position embedding: ``batch=true``
        batch = len(dims) >= 2 and dims[0] == 1 and any(
            self._tensor(user) and len(self.values[user].shape) + 1 == len(dims) for user in fx_node.users)
        stmt = ParamStmt(fx_node.target, list(dims), float(flat[0]) if constant and flat.numel() else 0.0,
                         0.0 if constant else _round_std(float(flat.std())), batch=batch)
        return Node(fx_node.target, "param", [], dims[1:] if batch else dims, stmt=stmt)

    def joined(self, parts: list[Node]) -> Node:
        """``torch.cat(parts, 1)`` as concats, one prefix at a time and each prefix once
        (DenseNet concatenates a growing list: [x0], [x0, y1], [x0, y1, y2], ...)."""
        key = tuple(id(p) for p in parts)
        if len(parts) == 1:
            return parts[0]
        if key not in self.prefixes:
            head = self.joined(parts[:-1])
            shape = (head.shape[0] + parts[-1].shape[0], *head.shape[1:])
            node = Node(f"cat_{len(self.prefixes)}", "merge", [head, parts[-1]], shape, stmt=MergeStmt("concat", ""))
            node.order = len(self.order)
            self.order.append(node)
            self.prefixes[key] = node
        return self.prefixes[key]

    def _module(self, fx_node: fx.Node, index: int | None = None, result: fx.Node | None = None) -> Node:
        """A call of a child; ``index``: the element of its result that ``result`` takes."""
        target = str(fx_node.target)
        result = result or fx_node
        call, inputs = self._torch_call(fx_node, "module", index, self._shape(result))
        head = fx_node.args[0] if len(fx_node.args) == 1 else None
        listed = isinstance(head, (list, tuple)) and len(inputs) == len(head) >= 1 and not fx_node.kwargs
        if listed and index is None:
            inputs = [self.joined(inputs)]  # a child given a list of tensors joins them first
        plain = len(inputs) == 1 and (listed or (not call.args and not call.kwargs)) and index is None
        if len({id(n) for n in inputs}) != 1:
            raise Unsupported(f"calls its child '{target}' with {len({id(n) for n in inputs})} tensors",
                              "each statement of a spec takes one tensor")
        child = self.traced.module.get_submodule(target)
        in_shape = inputs[0].shape
        first_use = target not in self.used_modules
        if not first_use and any(True for _ in self.traced.module.get_submodule(target).state_dict()):
            raise Unsupported(f"calls its child '{target}' twice: one set of weights used twice",
                              "a spec makes a module per statement; only a linear layer may share a weight (tie=)")
        in_sequential = isinstance(self.traced.module, nn.Sequential)
        label = target if (_IDENTIFIER.match(target) or in_sequential) and first_use else None
        self.used_modules.add(target)
        match = recognise_module(child, in_shape, None if plain else call)
        if match is not None:
            if not in_sequential and not any(True for _ in child.state_dict()):
                label = None  # a stateless module's name is in no state dict: a label only if read again
            elif "." in target:  # nn.ModuleList's 'layers.0': no label is that name, so no strict load
                raise Unsupported(f"calls '{target}' ({type(child).__name__}), a module of a child, whose "
                                  "weights no statement's label can name",
                                  "a spec names a module by its statement's label, one level deep: make the "
                                  "repeated part a module class (a block), held in an nn.Sequential")
            return Node(result.name, "op", inputs[:1], self._shape(result),
                        stmt=OpStmt(label, match.op.name, match.args, in_shape), child=child, target=target)
        if len(inputs) != 1 or fx_node.kwargs or index is not None:
            raise Unsupported(f"calls its child '{target}' ({type(child).__name__}) otherwise than "
                              f"'{target}(x)', and no op of the catalogue is called so",
                              "an op called otherwise declares from_module_call (resdsl/ops/base.py)")
        if type(child).__name__ == _DROP_PATH and getattr(child, "mode", None) == "row":
            return Node(fx_node.name, "drop_path", inputs, self._shape(fx_node), child=child, target=target)
        if "." in target or label is None:
            raise Unsupported(f"calls '{target}' ({type(child).__name__}), which is not a direct child called once",
                              "a spec names each submodule once, by its label")
        return Node(fx_node.name, "child", inputs, self._shape(fx_node), child=child, target=target)

    def _call(self, fx_node: fx.Node) -> Node | list[Node] | None:
        source, index = fx_node, None
        if fx_node.op == "call_function" and call_name(fx_node) == "_operator.getitem":
            head = fx_node.args[0]
            if isinstance(head, fx.Node) and _is_multi(head, self.values) and isinstance(fx_node.args[1], int):
                if head.op == "call_module":  # m(x, x, x)[0]: the module call, one result taken
                    return self._module(head, fx_node.args[1], fx_node)
                source, index = head, fx_node.args[1]
        head = source.args[0] if source.args else None
        chain = self.pending.pop(head, None) if isinstance(head, fx.Node) else None
        call, inputs = self._torch_call(source, call_name(source), index, self._shape(fx_node), chain)
        if call.name in ("torch.cat", "torch.concat") and _cat_list(source, self) is not None:
            return self.joined(_cat_list(source, self))
        for op in _ops_for(call.name):
            found = op.from_call(call)
            if found is None:
                continue
            if op.source:  # a learnable tensor's own call (the class token expanded to the batch)
                if inputs[0].kind != "param" or found.get("batch") != inputs[0].stmt.batch:
                    continue
                self.nodes[fx_node] = inputs[0]
                return None
            if isinstance(found, list):  # several ops in a row: x.mean([2, 3]) is a pool, then a flatten
                return self._steps(fx_node, inputs[0], found)
            kind = "merge" if op.merge_code is not None else "op"
            found = coerce_args(op, found)  # (1, 1) -> 1, as a module's arguments are read
            stmt = MergeStmt(op.name, "") if kind == "merge" else OpStmt(None, op.name, found, inputs[0].shape)
            return Node(fx_node.name, kind, inputs, self._shape(fx_node), stmt=stmt)
        first = chain[2] if chain is not None else fx_node
        if self._chains(fx_node, inputs):
            self.pending[fx_node] = (call, inputs[0], first)
            return None
        raise _unknown(first, call.name)

    def _chains(self, fx_node: fx.Node, inputs: list[Node]) -> bool:
        """Whether a call that is no op alone may begin a chain: one tensor in, and its
        result read by one call only, as that call's first argument."""
        users = list(fx_node.users)
        return (len({id(n) for n in inputs}) == 1 and len(users) == 1
                and users[0].op in ("call_function", "call_method")
                and bool(users[0].args) and users[0].args[0] is fx_node and self._tensor(users[0]))

    def _torch_call(self, source: fx.Node, name: str, index: int | None, shape: tuple[int, ...],
                    before: tuple[TorchCall, Node, fx.Node] | None = None) -> tuple[TorchCall, list[Node]]:
        """``source`` as the catalogue sees it, and the nodes of its tensor arguments (input 0
        first; ``before``: the pending call that made input 0, the chain's input is its)."""
        inputs: list[Node] = []

        def convert(arg: Any) -> Any:
            if isinstance(arg, fx.Node):
                if arg in self.nodes and self._tensor(arg):
                    inputs.append(self.nodes[arg])
                    return TensorRef(len(inputs) - 1)
                return self.values[arg].plain if arg in self.values else None
            if isinstance(arg, (list, tuple)):
                return type(arg)(convert(item) for item in arg)
            return arg

        head = source.args[0] if source.args else None
        leading = before is not None or (isinstance(head, fx.Node) and head in self.nodes and self._tensor(head))
        args = tuple(convert(a) for a in (source.args[1:] if leading else source.args))
        if leading:  # ``self`` of a method, ``x`` of torch.flatten(x, 1): input 0, not an argument
            inputs.insert(0, before[1] if before is not None else self.nodes[head])
            args = tuple(_shift(a) for a in args)
        kwargs = {k: convert(v) for k, v in source.kwargs.items()}
        shapes = [n.shape for n in inputs]
        if before is not None:
            shapes[0] = before[0].shape
            name = f"{before[0].name}+{name}"
        distinct = tuple(next(k for k, other in enumerate(inputs) if other is node) for node in inputs)
        call = TorchCall(name, args, kwargs, tuple(shapes), shape, index,
                         before=before[0] if before is not None else None, distinct=distinct)
        return call, inputs

    def _steps(self, fx_node: fx.Node, source: Node, steps: list[tuple[str, dict]]) -> list[Node]:
        nodes, current = [], source
        for name, args in steps:
            op = REGISTRY[name]
            args = coerce_args(op, args)
            shape = tuple(op.infer(current.shape, bind_args(op, args, current.shape)))
            node = Node(fx_node.name, "op", [current], shape, stmt=OpStmt(None, name, args, current.shape))
            nodes.append(node)
            current = node
        if current.shape != self._shape(fx_node):
            raise Unsupported(f"'{fx_node.format_node()}' gives {list(self._shape(fx_node))}, "
                              f"its ops {list(current.shape)}")
        return nodes


def _unknown(fx_node: fx.Node, name: str) -> Unsupported:
    """``fx_node`` is no op; ``name``: the calls from it on that were tried as one (a chain)."""
    first = name.split("+")[0]
    chain = f", nor are the calls from it on ({name.replace('+', ', ')})" if "+" in name else ""
    return Unsupported(f"'{fx_node.format_node()}' ({first}) is no op of the catalogue{chain}",
                       "resdsl.ops lists the ops; a new one is one catalogue entry (docs/extending.md)")


def _shift(arg: Any) -> Any:
    """A method's arguments after ``self``: tensor indices count ``self`` as input 0."""
    if isinstance(arg, TensorRef):
        return TensorRef(arg.index + 1)
    if isinstance(arg, (list, tuple)):
        return type(arg)(_shift(a) for a in arg)
    return arg


def _ops_for(name: str) -> list[OpSpec]:
    return [op for op in REGISTRY.values() if name in op.torch_calls and op.from_call is not None]


def _joined_at_entry(placeholders: list[fx.Node]) -> fx.Node | None:
    """The ``torch.cat(inputs, 1)`` that a forward given a list of tensors starts with."""
    if not placeholders or any(len(p.users) != 1 for p in placeholders):
        return None
    (cat,) = placeholders[0].users
    tensors = cat.args[0] if cat.args else None
    dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
    if call_name(cat) in ("torch.cat", "torch.concat") and list(tensors or ()) == placeholders and dim == 1:
        return cat
    return None


def _cat_list(fx_node: fx.Node, builder: "_Builder") -> list[Node] | None:
    """The tensors of ``torch.cat([a, b, ...], 1)`` along the channels, or None."""
    tensors = fx_node.args[0] if fx_node.args else fx_node.kwargs.get("tensors")
    dim = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    if not all(isinstance(t, fx.Node) and t in builder.nodes and builder._tensor(t) for t in tensors):
        return None
    rank = len(builder.nodes[tensors[0]].shape)
    if not isinstance(dim, int) or (dim + rank + 1 if dim < 0 else dim) != 1:
        return None
    return [builder.nodes[t] for t in tensors]


def _plain(value: Value | None) -> bool:
    """Whether a node's value is plain data (sizes, flags, None), not tensors."""
    def plain(item: Any) -> bool:
        if isinstance(item, (list, tuple)):
            return all(plain(i) for i in item)
        return item is None or isinstance(item, (int, float, bool, str, slice))

    return value is not None and not value.tensor and plain(value.plain)


def _is_multi(fx_node: fx.Node, values: dict[fx.Node, Value]) -> bool:
    """Whether a node gives several results, tensors among them (x.chunk(2, 1); attention's
    (output, None)): each is taken by a getitem after it."""
    value = values.get(fx_node)
    return value is not None and isinstance(value.plain, tuple) and all(
        isinstance(v, Value) for v in value.plain) and any(v.tensor for v in value.plain)


def _is_parameter(module: nn.Module, target: str) -> bool:
    try:
        return isinstance(module.get_parameter(target), nn.Parameter)
    except AttributeError:
        return False


def _round_std(std: float) -> float:
    """A normal initialisation's deviation as a person writes it (0.0199 -> 0.02)."""
    return float(f"{std:.1g}") if std > 0 else 0.0


# ---- residuals ---------------------------------------------------------------------------
def _ancestors(node: Node, limit: set[int] | None = None) -> set[int]:
    seen: set[int] = set()
    todo = [node]
    while todo:
        current = todo.pop()
        for parent in current.inputs:
            if id(parent) not in seen:
                seen.add(id(parent))
                todo.append(parent)
    return seen


def find_residuals(entry: Node, order: list[Node], classify: Callable[[Node, list[Node], Node], Any],
                   replaced: dict[int, Node]) -> list[Node]:
    """Collapse each ``add`` whose operands fork from one tensor into a residual node.

    ``classify(fork, shortcut_nodes, add)`` decides whether the shortcut side is one the
    language writes (returns the residual's options and shortcut, or None).
    """
    users: dict[int, list[Node]] = {}
    for node in order:
        for parent in node.inputs:
            users.setdefault(id(parent), []).append(node)
    result = list(order)
    for add in list(order):
        if add.kind != "merge" or add.stmt.op != "add" or len(add.inputs) != 2 or add not in result:
            continue
        found = _match(entry, result, add, users)
        if found is None:
            continue
        fork, body, short = found
        decided = None
        # Either side may be the shortcut: the identity first, then the projection the language
        # makes itself, then an explicit path (the side with fewer parameters).
        for body, short in sorted([(body, short), (short, body)], key=_shortcut_rank):
            if body:
                decided = classify(fork, short, add)
                if decided is not None:
                    break
        if decided is None:
            continue
        body_ids = {id(n) for n in body}
        out = next((p for p in add.inputs if id(p) in body_ids), fork)
        residual = Node(add.name, "residual", [fork], add.shape, body=body, short=short,
                        stmt=decided, order=add.order, out=out)
        members = {id(n) for n in body + short} | {id(add)}
        for node in result:
            node.inputs = [residual if p is add else p for p in node.inputs]
        for parent_users in users.values():
            parent_users[:] = [residual if u is add else u for u in parent_users]
        users[id(residual)] = users.pop(id(add), [])
        replaced[id(add)] = residual
        result = [residual if n is add else n for n in result if id(n) not in members or n is add]
    return result


def _weights(nodes: list[Node]) -> int:
    return sum(p.numel() for n in nodes if n.child is not None for p in n.child.parameters())


def _shortcut_rank(sides: tuple[list[Node], list[Node]]) -> tuple:
    body, short = sides
    return (len(short) > 0, _weights(short) > _weights(body), len(short))


def _match(entry: Node, order: list[Node], add: Node, users: dict[int, list[Node]]):
    """The fork and the two sides of ``add``: nodes used only inside, read only from inside."""
    left, right = add.inputs
    index = {id(n): i for i, n in enumerate(order)}
    index[id(entry)] = -1
    left_up = _ancestors(left) | {id(left)}
    right_up = _ancestors(right) | {id(right)}
    common = [n for n in [entry, *order] if id(n) in left_up and id(n) in right_up]
    if not common:
        return None
    fork = max(common, key=lambda n: index.get(id(n), -2))
    fork_up = _ancestors(fork) | {id(fork)}
    sides = []
    for operand, up in ((left, left_up), (right, right_up)):
        side = [n for n in order if id(n) in up and id(n) not in fork_up and n is not fork]
        if operand is fork:
            side = []
        sides.append(side)
    body, short = sides
    members = {id(n) for n in body + short}
    if len(members) != len(body) + len(short):
        return None
    for node in body + short:
        if node.kind == "param":
            continue
        if any(id(p) not in members and p is not fork for p in node.inputs):
            return None
        if any(id(u) not in members and u is not add for u in users.get(id(node), [])):
            return None
    return fork, body, short


# ---- the chain ---------------------------------------------------------------------------
class Labels:
    """Tensor labels of one scope: module names first, then fresh ones for the rest."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)

    def fresh(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "t"
        if not _IDENTIFIER.match(base):
            base = "t_" + base
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


class Chain:
    """Writes nodes as a chain of statements: ``from L`` where the data jumps back, ``add L``
    for a merge with an earlier tensor; tensors read again get labels (module names where
    they have one). One per block body; a residual's body is written by the same chain, so
    a label given inside is seen outside."""

    def __init__(self, entry: Node, labels: Labels, make: Callable[[Node], Stmt]):
        self.entry, self.labels, self.make = entry, labels, make
        self.made: dict[int, Stmt] = {}

    def ref(self, node: Node) -> str:
        if node is self.entry:
            return "input"
        stmt = self.made[id(node)]
        if getattr(stmt, "label", None) is None:
            stmt.label = self.labels.fresh(node.name)
        return stmt.label

    def write(self, start: Node, order: list[Node], output: Node) -> list[Stmt]:
        stmts: list[Stmt] = []
        current = start
        for node in order:
            if node.kind == "param":
                stmt = self.make(node)
            elif node.kind == "merge":
                first, *rest = node.inputs
                if node.stmt.op != "concat" and current is rest[0]:
                    first, rest = rest[0], [first]  # a + b == b + a: keep the chain going
                if current is not first:
                    stmts.append(FromStmt(self.ref(first)))
                # torch.cat of more than two: one concat after another (the same tensor)
                for other in rest[:-1]:
                    stmts.append(MergeStmt(node.stmt.op, self.ref(other)))
                stmt = MergeStmt(node.stmt.op, self.ref(rest[-1]))
            else:
                if node.inputs and current is not node.inputs[0]:
                    stmts.append(FromStmt(self.ref(node.inputs[0])))
                stmt = self.make(node)
            self.made[id(node)] = stmt
            stmts.append(stmt)
            current = node
        if current is not output:
            stmts.append(FromStmt(self.ref(output)))
        return stmts


def residual_stmt(options: dict, body: list[Stmt], shortcut: list[Stmt] | None) -> ResidualStmt:
    return ResidualStmt(body, shortcut, options)


def is_projection(child: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """Whether ``child`` is exactly the projection the language makes by itself: a 1x1 conv
    (stride ``ceil(in / out)``, no bias) and a default batchnorm, in an ``nn.Sequential``
    (``linear`` without bias and a batchnorm for a flat tensor)."""
    if not isinstance(child, nn.Sequential) or len(child) != 2:
        return False
    first, norm = child[0], child[1]
    weight = recognise_module(first, in_shape)
    if weight is None:
        return False
    mid = _after(first, in_shape)
    after = recognise_module(norm, mid) if mid is not None else None
    if after is None or after.op.name != "batchnorm" or after.args.get("eps") != 1e-5 \
            or after.args.get("momentum") != 0.1:
        return False
    if len(in_shape) == 1:
        return weight.op.name == "linear" and not weight.args["bias"] and out_shape == (weight.args["out_features"],)
    stride = tuple(math.ceil(a / b) for a, b in zip(in_shape[1:], out_shape[1:]))
    args = weight.args
    return (weight.op.name == "conv" and _uniform(args["kernel"]) == 1 and _expand(args["stride"], stride)
            and _uniform(args["pad"]) == 0 and _uniform(args["dilation"]) == 1 and args["groups"] == 1
            and not args["bias"] and args["out_channels"] == out_shape[0])


def _after(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        with torch.no_grad():
            return tuple(module(torch.zeros((1, *in_shape), device="meta")).shape[1:])
    except Exception:
        return None


def _uniform(value: Any) -> Any:
    if isinstance(value, tuple):
        return value[0] if len(set(value)) == 1 else value
    return value


def _expand(value: Any, wanted: tuple[int, ...]) -> bool:
    return (tuple(value) if isinstance(value, tuple) else (value,) * len(wanted)) == wanted
