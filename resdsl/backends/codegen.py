"""Graph -> standalone, readable PyTorch source (and the one place that runs it).

:func:`generate` turns a checked :class:`~resdsl.api.Net` into one Python file
that imports only torch: one ``nn.Module`` class per block definition, a network
class whose ``__init__`` takes the spec's parameters, and straight-line
``forward`` methods (fx-style: temporaries are released when dead, every line
says which spec line it comes from). :func:`load_source` compiles that text and
registers it with :mod:`linecache`, so tracebacks and ``inspect.getsource`` show
the generated lines. ``Net.build()`` runs exactly this code.

Only identifiers that passed the front end's checks (or names derived here) and
``repr()`` of int/float/bool/str/tuple values ever reach the output: no spec
text is copied. The output is a pure function of the graph, so it is
byte-identical across runs.

How a block definition with structurally different instances becomes one class:
constructor arguments are written as the spec's own expressions over the
block's parameters (``nn.Conv2d(in_channels, width, ...)``), checked against the
value of every instance; an automatic ``downsample`` projection that only some
instances need becomes an optional submodule with a ``None`` check, as in
torchvision's ``Bottleneck``. Instances that still differ (rare: e.g. an option-A
shortcut in some instances only) get numbered variant classes
(``Basic``, ``Basic_2``). See docs/codegen.md.

>>> import resdsl
>>> net = resdsl.loads('''
... network tiny(classes: int = 3):
...     input x: [8]
...     fc1: linear 16
...     relu
...     head: linear classes
... ''')
>>> source = generate(net)
>>> "class Tiny(nn.Module):" in source.text and "def __init__(self, classes: int = 3)" in source.text
True
>>> model = source.module_class()()
>>> model.head
Linear(in_features=16, out_features=3, bias=True)
"""

from __future__ import annotations

import hashlib
import inspect
import keyword
import linecache
import math
import os
import re
import sys
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import ir
from ..errors import Problem, SpecError
from ..expr import evaluate
from ..graph import Container, containers, residual_units
from ..ops.base import OMIT, TorchArgs

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Net

INDENT = "    "
LINE_LENGTH = 88
IN = "\0in"  # the name of a container's input channel count (not a spec identifier)
#: Names the generated code itself uses; a spec name equal to one gets a trailing ``_``.
RESERVED = frozenset({
    "self", "torch", "nn", "F", "super", "min", "max", "int", "float", "bool", "tuple", "range",
    "None", "True", "False", "ValueError", "Optional", "_center_crop", "_drop_path", "ChannelLayerNorm",
})
#: Ops whose output autograd does not need for their backward: safe to overwrite in place.
MUTABLE_PRODUCERS = frozenset({"conv", "upconv", "linear", "batchnorm", "groupnorm",
                               "residual_add", "add", "mul", "concat"})
INLINE_OPS = frozenset({"residual_add", "add", "mul", "concat", "zero_pad"})


# ---- small helpers ------------------------------------------------------------------
def _safe_file(filename: str) -> str:
    """The spec's base name for ``# file:line`` comments; odd names become ``spec``."""
    base = os.path.basename(filename)
    return base if re.fullmatch(r"[A-Za-z0-9_.+-]{1,80}", base) else "spec"


def _camel(name: str) -> str:
    """``double_conv`` -> ``DoubleConv``, ``resnet50`` -> ``Resnet50``."""
    parts = [p for p in name.split("_") if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts) or "Net"
    return text if text[0].isalpha() else "N" + text


def _pyname(name: str, taken: frozenset[str] | set[str] = RESERVED) -> str:
    while name in taken or keyword.iskeyword(name):
        name += "_"
    return name


def _compact(value: Any) -> Any:
    """(3, 3) -> 3: torch expands an int to every spatial dimension."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]
    return value


def _lit(value: Any) -> str:
    """A literal of generated code. Exact types only: a subclass of int or str could
    bring its own ``__repr__`` (normalised away at the API, refused here again)."""
    value = _compact(value)
    if type(value) is str and re.fullmatch(r"[\w .,;:=/()-]*", value):
        return f'"{value}"'  # black's quotes; repr() for anything else
    if type(value) is str or value is None:
        return repr(value)
    if type(value) is tuple:
        return repr(tuple(_checked_scalar(v) for v in value))
    return repr(_checked_scalar(value))


def _checked_scalar(value: Any) -> Any:
    if type(value) in (bool, int) or (type(value) is float and math.isfinite(value)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} into generated code")  # pragma: no cover


def _key(span: Any) -> tuple:
    return (span.file, span.line, span.column)


# ---- expressions: the spec's own, re-written as Python ------------------------------
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def _names(expr: ir.Expr) -> set[str]:
    if isinstance(expr, ir.NameRef):
        return {expr.name}
    if isinstance(expr, ir.BinOp):
        return _names(expr.left) | _names(expr.right)
    if isinstance(expr, ir.Neg):
        return _names(expr.operand)
    if isinstance(expr, ir.FuncCall):
        return set().union(*(_names(a) for a in expr.args))
    return set()


def _source(expr: ir.Expr, py: dict[str, str]) -> tuple[str, int]:
    """Python source of ``expr`` and its precedence (names through ``py``)."""
    if isinstance(expr, (ir.IntLit, ir.FloatLit, ir.BoolLit)):
        text = _lit(expr.value)
        return text, (3 if text.startswith("-") else 4)
    if isinstance(expr, ir.KernelLit):
        return _lit(tuple(expr.dims)), 4
    if isinstance(expr, ir.NameRef):
        return py[expr.name], 4
    if isinstance(expr, ir.Neg):
        text, prec = _source(expr.operand, py)
        return "-" + (text if prec >= 3 else f"({text})"), 3
    if isinstance(expr, ir.FuncCall):
        return f"{expr.func}({', '.join(_source(a, py)[0] for a in expr.args)})", 4
    prec = _PREC[expr.op]
    left, lp = _source(expr.left, py)
    right, rp = _source(expr.right, py)
    if lp < prec:
        left = f"({left})"
    if rp <= prec:
        right = f"({right})"
    return f"{left} {expr.op} {right}", prec


def _substitute(expr: ir.Expr, mapping: dict[str, ir.Expr]) -> ir.Expr:
    if isinstance(expr, ir.NameRef):
        return mapping.get(expr.name, expr)
    if isinstance(expr, ir.BinOp):
        return _fold(ir.BinOp(op=expr.op, left=_substitute(expr.left, mapping),
                              right=_substitute(expr.right, mapping)))
    if isinstance(expr, ir.Neg):
        return ir.Neg(operand=_substitute(expr.operand, mapping))
    if isinstance(expr, ir.FuncCall):
        return ir.FuncCall(func=expr.func, args=tuple(_substitute(a, mapping) for a in expr.args))
    return expr


def _fold(expr: ir.BinOp) -> ir.Expr:
    if isinstance(expr.left, ir.IntLit) and isinstance(expr.right, ir.IntLit) and expr.op in "+-*":
        try:
            return ir.IntLit(value=evaluate(expr, {}))
        except Problem:  # pragma: no cover - out of range
            return expr
    return expr


def _int(value: int) -> ir.Expr:
    return ir.IntLit(value=value)


def _normalise(value: Any, kind: str, rank: int) -> Any:
    if kind == "tuple" and isinstance(value, int) and not isinstance(value, bool):
        return (value,) * rank
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# ---- rendering context --------------------------------------------------------------
@dataclass
class Ctx:
    """What one container instance's code can refer to: names, their values, their Python spelling."""

    env: dict[str, Any]  # visible names (spec names, and IN) -> this instance's values
    py: dict[str, str]  # visible names -> Python identifiers
    net_params: set[str]  # network parameters visible unshadowed (may be passed on by name)
    used: set[str] = field(default_factory=set)

    def expr(self, expr: ir.Expr | None, value: Any, kind: str = "int", rank: int = 0) -> str:
        """``expr`` as Python if it gives ``value`` for this instance, else ``value``'s literal."""
        sym = self.sym(expr, value, kind, rank)
        if sym is None:
            return _lit(value)
        self.used |= _names(sym)
        return _source(sym, self.py)[0]

    def sym(self, expr: ir.Expr | None, value: Any, kind: str = "int", rank: int = 0) -> ir.Expr | None:
        if expr is None or not _names(expr) <= set(self.env):
            return None
        try:
            got = _normalise(evaluate(expr, self.env), kind, rank)
        except Problem:
            return None
        if got != _normalise(value, kind, rank) or type(_compact(got)) is not type(_compact(value)):
            return None
        return expr

    def match(self, value: Any, kind: str, rank: int, *candidates: ir.Expr | None) -> str:
        """A shape-derived value: the first candidate expression (or parameter) that gives it."""
        names = [ir.NameRef(name=n) for n in self.env if n != IN and
                 isinstance(self.env[n], int) and not isinstance(self.env[n], bool)]
        for cand in (*candidates, *names):
            if cand is not None and not isinstance(cand, ir.IntLit) and self.sym(cand, value, kind, rank):
                return self.expr(cand, value, kind, rank)
        return _lit(value)


# ---- a tiny pretty printer for constructor calls --------------------------------------
@dataclass
class Call:
    func: str
    args: list[Any]  # str | Call

    def flat(self) -> str:
        return f"{self.func}({', '.join(_flat(a) for a in self.args)})"


@dataclass
class Cond:
    body: Any
    test: str

    def flat(self) -> str:
        return f"{_flat(self.body)} if {self.test} else None"


def _flat(node: Any) -> str:
    return node if isinstance(node, str) else node.flat()


def _layout(node: Any, indent: str, prefix: str = "", suffix: str = "", room: int = 0) -> list[str]:
    """Black-like layout: one line if it fits (``room`` is kept free for a comment),
    else the arguments on one indented line, else one argument per line."""
    line = f"{indent}{prefix}{_flat(node)}{suffix}"
    if len(line) + room <= LINE_LENGTH or isinstance(node, str):
        return [line]
    inner = indent + INDENT
    if isinstance(node, Cond):
        return ([f"{indent}{prefix}("] + _layout(node.body, inner) +
                [f"{inner}if {node.test}", f"{inner}else None", f"{indent}){suffix}"])
    hugged = f"{inner}{', '.join(_flat(a) for a in node.args)}"
    if node.args and len(hugged) <= LINE_LENGTH and not any(isinstance(a, (Call, Cond)) for a in node.args):
        return [f"{indent}{prefix}{node.func}(", hugged, f"{indent}){suffix}"]
    lines = [f"{indent}{prefix}{node.func}("]
    for arg in node.args:
        lines += _layout(arg, inner, suffix=",")
    return lines + [f"{indent}){suffix}"]


def _statement(target: str, node: Any, indent: str, comment: str) -> list[str]:
    lines = _layout(node, indent, prefix=f"{target} = ", room=len(comment) + 2 if comment else 0)
    if comment:
        lines[-1] += f"  {comment}"
    return lines


# ---- classes ----------------------------------------------------------------------------
class CodeArgs(TorchArgs):
    """An op's constructor as Python source: the spec's expression of each argument where it
    gives this instance's value, else a literal (the op's ``code`` asks, see resdsl.ops)."""

    def __init__(self, gen: "Generator", spec: Any, ctx: Ctx, in_shape: tuple, args: dict,
                 exprs: dict, overrides: dict, in_sym: ir.Expr | None):
        self.gen, self.spec, self.ctx = gen, spec, ctx
        self.in_shape, self.args = in_shape, args
        self.exprs, self.overrides, self.in_sym = exprs, overrides, in_sym

    def arg(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        arg_spec = self.spec.arg(name)
        expr = self.exprs.get(name)
        if expr is None and arg_spec is not None and arg_spec.same_as:
            expr = self.exprs.get(arg_spec.same_as)  # e.g. a pool's stride written as its kernel
        kind = arg_spec.kind if arg_spec else "int"
        return self.ctx.expr(expr, self.args[name], kind, self.rank)

    def channels(self) -> str:
        return self.ctx.expr(self.in_sym, self.in_shape[0])

    def features(self) -> str:
        return self.channels() if self.rank == 0 else _lit(self.in_shape[-1])

    def lit(self, value: Any) -> str:
        return _lit(value)

    def kw(self, name: str, torch_default: Any) -> Any:
        if name not in self.overrides and name not in self.exprs and \
                _compact(self.args[name]) == _compact(torch_default):
            return OMIT
        return self.arg(name)

    def call(self, callee: str, *positional: Any, **keywords: Any) -> Call:
        if not callee.startswith("nn."):
            self.gen.helpers.add(callee)  # a helper class of resdsl.backends.layers
        parts = list(positional) + [f"{k}={v}" for k, v in keywords.items() if v is not OMIT]
        return Call(callee, parts)


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


class Generator:
    """Renders every container of one net; see :func:`generate`."""

    def __init__(self, net: "Net", signature: dict[str, Any] | None = None,
                 frozen: dict[str, Any] | None = None):
        self.net = net
        self.graph = net.graph
        self.boxes = containers(self.graph)
        self.file = _safe_file(net.filename)
        self.signature = dict(net.params if signature is None else signature)
        self.frozen = frozen or {}
        self.stmts: dict[tuple, Any] = {}
        self.block_ir: dict[str, ir.Block] = dict(net.blocks)
        for block in net.ir.blocks:
            self.block_ir.setdefault(block.name, block)
        self._index(net.ir.body)
        for block in self.block_ir.values():
            self._index(block.body)
        self.net_types = {p.name: p.type for p in net.ir.params}
        self.helpers: set[str] = set()
        self.uses_functional = False
        self.class_of: dict[str, ClassInfo] = {}
        self.classes: list[ClassInfo] = []
        self.taken_class_names: set[str] = set(RESERVED)
        # A class is called by name inside __init__ bodies whose arguments are spec
        # parameters: a parameter named like a class (``Unit`` beside block ``unit``) would
        # shadow it, so class names avoid every parameter name.
        for params in [net.ir.params] + [block.params for block in self.block_ir.values()]:
            self.taken_class_names |= {p.name for p in params} | {_pyname(p.name) for p in params}
        self.unit_kinds: dict[str, set[str]] = {}
        self.unit_local: dict[str, str] = {}
        # A shortcut=none unit has no merge: its "merge" is its body's output, which may be
        # another unit's real merge (a block ending in a residual), so it must not be mapped.
        self.units_by_merge = {u.merge: u for u in residual_units(self.graph) if u.shortcut != "none"}
        self.children = self._children()
        self.flag_values: dict[str, dict[str, bool]] = {}
        # Names the code is written in terms of: the spec's, and parameters whose value
        # merely matched a shape-derived one (Ctx.match), which the spec never names.
        self.mentioned: set[str] = set()
        # Units by their container and by their projection's container, so each lookup is
        # one dict access (a scan of every unit per container made generation quadratic).
        self.units_in: dict[str, list] = {}
        self.units_of_shortcut: dict[str, list] = {}
        for unit in residual_units(self.graph):
            self.units_in.setdefault(unit.container, []).append(unit)
            path = self._shortcut_path(unit)
            if path is not None:
                self.units_of_shortcut.setdefault(path, []).append(unit)

    # -- indexes --------------------------------------------------------------------
    def _index(self, stmts) -> None:
        for stmt in stmts:
            self.stmts[_key(stmt.span)] = stmt
            if isinstance(stmt, ir.Residual):
                self._index(stmt.body)
                if stmt.shortcut:
                    self._index(stmt.shortcut)

    def _children(self) -> dict[str, list[tuple[str, Any]]]:
        """Per container, its steps in graph order: ("node", id) or ("child", path)."""
        steps: dict[str, list[tuple[str, Any]]] = {path: [] for path in self.boxes}
        seen: set[tuple[str, str]] = set()
        for node, data in self.graph.nodes(data=True):
            if data["module"] is None:
                continue
            where = data["container"]
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
            return f"block:{box.block}"
        if box.kind == "stage" or (box.kind == "shortcut" and self._simple_shortcut(path)):
            return None
        return f"{box.kind}:{box.span.line}:{box.span.column}:{self._owner_key(path)}"

    def where(self, span: Any) -> str:
        """``file:line`` for a comment: the file the statement is written in (an imported
        block's own file), by base name."""
        return f"{_safe_file(span.file)}:{span.line}"

    def _owner_key(self, path: str) -> str:
        while path:
            path = path.rsplit(".", 1)[0] if "." in path else ""
            key = self.def_key(path)
            if key is not None:
                return key
        return "network"

    def _simple_shortcut(self, path: str) -> bool:
        items = self.children[path]
        box = self.boxes[path]
        prev = box.input
        for index, (kind, ref) in enumerate(items):
            if kind != "node":
                return False
            data = self.graph.nodes[ref]
            if data["op"] in INLINE_OPS or data["module"].rsplit(".", 1)[-1] != str(index) or \
                    data["inputs"] != (prev,):
                return False
            prev = ref
        return bool(items) and prev == box.output

    def _local(self, path: str) -> str:
        return path.rsplit(".", 1)[-1]

    # -- the pre-pass over residual units ----------------------------------------------
    def _unit_key(self, unit) -> str:
        return f"{self._owner_key(unit.container + '.x') if unit.container else 'network'}:" \
               f"{unit.span.line}:{unit.span.column}"

    def _shortcut_path(self, unit) -> str | None:
        if unit.shortcut != "projection":
            return None
        return self.graph.nodes[self.graph.nodes[unit.merge]["inputs"][1]]["container"]

    def scan_units(self) -> None:
        for unit in residual_units(self.graph):
            key = self._unit_key(unit)
            self.unit_kinds.setdefault(key, set()).add(unit.shortcut)
            path = self._shortcut_path(unit)
            if path is not None:
                self.unit_local.setdefault(key, self._local(path))

    def mixed(self, unit) -> bool:
        return self.unit_kinds.get(self._unit_key(unit)) == {"identity", "projection"}

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
            base, doc = _camel(self.net.name), f"Network ``{self.net.name}`` ({self.where(box.span)})."
        elif box.kind == "block":
            definition = self.block_ir[box.block].span if box.block in self.block_ir else box.span
            base, doc = _camel(box.block), f"Block ``{box.block}`` ({self.where(definition)})."
        else:
            owner = self.class_of_owner(path)
            base = owner + _camel(self._local(path))
            doc = f"The {box.kind} ``{self._local(path)}`` of {owner} ({self.where(box.span)})."
        name = base if variant == 0 else f"{base}_{variant + 1}"
        while name in self.taken_class_names:
            name += "_"
        self.taken_class_names.add(name)
        info = ClassInfo(name, body, r.params, r.net_params, r.flags, r.out_sym, path, doc)
        self.classes.append(info)
        return info

    def class_of_owner(self, path: str) -> str:
        key = self._owner_key(path)
        if key == "network":
            return _camel(self.net.name)
        if key.startswith("block:"):
            return _camel(key.split(":", 1)[1])
        return "Part"

    # -- one container instance ------------------------------------------------------------
    def context(self, path: str) -> Ctx:
        box = self.boxes[path]
        net_params = dict(self.net.params)
        if box.kind == "network":
            py = {n: _pyname(n) for n in net_params}
            return Ctx(dict(net_params), py, set(net_params))
        owner = path
        while self.boxes[owner].kind not in ("block", "network"):
            owner = owner.rsplit(".", 1)[0] if "." in owner else ""
        bound = dict(self.boxes[owner].args) if self.boxes[owner].kind == "block" else {}
        if self.boxes[owner].kind == "block":  # a block sees the network parameters it names
            body = self.block_ir[self.boxes[owner].block].body if self.boxes[owner].block in self.block_ir else ()
            mentioned = _mentioned(body)
            net_params = {n: v for n, v in net_params.items() if n in mentioned}
        env = {**net_params, **bound}
        py = {n: _pyname(n) for n in env}
        taken = set(py.values()) | RESERVED
        env[IN] = self.graph.nodes[box.input]["shape"][0]
        py[IN] = _pyname("in_channels", taken)
        return Ctx(env, py, {n for n in net_params if n not in bound})

    def render(self, path: str) -> Rendered:
        box = self.boxes[path]
        ctx = self.context(path)
        chan: dict[int, ir.Expr | None] = {}
        if box.kind == "network":
            in_shape = self.graph.nodes[box.input]["shape"]
            expr = self.net.ir.input.shape[0] if self.net.ir.input.shape else None
            chan[box.input] = ctx.sym(expr, in_shape[0]) or _int(in_shape[0])
        else:
            chan[box.input] = ir.NameRef(name=IN)
        init: list[str] = []
        ops: list[Op] = []
        flags: list[tuple[str, str]] = []
        flag_values: dict[str, bool] = {}
        placeholders: dict[str, str] = {}
        filled: dict[str, list[str]] = {}
        skip_children: set[str] = set()
        inner = INDENT * 2
        for unit in self.units_in.get(path, ()):  # optional shortcuts of this container
            if self.mixed(unit):
                ukey = self._unit_key(unit)
                local = self.unit_local[ukey]
                flag = _pyname(local, set(ctx.py.values()) | RESERVED | {f for f, _ in flags})
                flags.append((flag, ukey))
                flag_values[flag] = unit.shortcut == "projection"
        for kind, ref in self.children[path]:
            if kind == "child":
                child_box = self.boxes[ref]
                unit = self._mixed_unit_of_shortcut(ref)
                if unit is not None:
                    skip_children.add(ref)
                    continue
                call = self.child_call(ref, ctx, chan)
                comment = f"# {self.where(child_box.span)}"
                init += _statement(f"self.{self._local(ref)}", call, inner, comment)
                ops.append(Op(child_box.output, (child_box.input,), child_box.span,
                              lambda v, r=ref: f"self.{self._local(r)}({v[0]})", kind="child",
                              local=self._local(ref)))
                continue
            data = self.graph.nodes[ref]
            if data["op"] in INLINE_OPS:
                chan[ref] = self.inline_chan(ref, ctx, chan)
                unit = self.units_by_merge.get(ref)
                if unit is not None and self.mixed(unit) and unit.container == path:
                    ukey = self._unit_key(unit)
                    flag = next(f for f, k in flags if k == ukey)
                    local = self.unit_local[ukey]
                    token = f"\0{ukey}\0"
                    sc_path = self._shortcut_path(unit)
                    if sc_path is not None:
                        seq = self.sequential(sc_path, ctx, chan)
                        lines = _statement(f"self.{local}", Cond(seq, flag), inner,
                                           f"# {self.where(unit.span)}")
                        filled[ukey] = lines
                    placeholders[token] = ukey
                    init.append(token)
                    ops.append(self.optional_merge(ref, unit, local))
                else:  # forward code sees no __init__ arguments: its values are literals
                    ops.append(self.inline_op(ref, Ctx({}, {}, set())))
                continue
            ctor = self.ctor(ref, ctx, chan)
            init += _statement(f"self.{self._local(data['module'])}", ctor, inner,
                               f"# {self.where(data['span'])}")
            local = self._local(data["module"])
            ops.append(Op(ref, tuple(data["inputs"]), data["span"],
                          lambda v, local=local: f"self.{local}({v[0]})", kind="module",
                          local=local, op=data["op"]))
        forward, inplace = self.forward(path, ops, box)
        self.mentioned |= ctx.used
        for local in inplace:
            init = [line.replace(f"self.{local} = nn.ReLU()", f"self.{local} = nn.ReLU(inplace=True)")
                    for line in init]
        out_sym = chan.get(box.output)
        params = self.signature_of(path, ctx)
        net_params = [n for n in sorted(ctx.used & ctx.net_params)
                      if box.kind != "network" and not self._is_block_param(path, n)]
        if box.kind in ("residual", "shortcut"):  # parts of a block take the block's names they use
            params += [(n, ctx.py[n], self._type_of(path, n), None)
                       for n in sorted(ctx.used - ctx.net_params - {IN})]
        body = self.class_body(path, ctx, params, net_params, flags, init, forward)
        return Rendered(body, params, net_params, flags, out_sym, flag_values, placeholders, filled)

    def _mixed_unit_of_shortcut(self, path: str):
        box = self.boxes[path]
        if box.kind != "shortcut":
            return None
        for unit in self.units_of_shortcut.get(path, ()):
            if self.mixed(unit):
                return unit
        return None

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
            return [(p.name, ctx.py[p.name], p.type, _lit(self.signature[p.name])) for p in self.net.ir.params]
        params = [(IN, ctx.py[IN], "int", None)]
        if box.kind == "block":
            for p in self.block_ir[box.block].params:
                default = None
                if p.default is not None and not _names(p.default):
                    try:
                        default = _lit(_coerce(evaluate(p.default, {}), p.type))
                    except (Problem, TypeError):
                        default = None
                params.append((p.name, ctx.py[p.name], p.type, default))
        return params

    # -- __init__ pieces -------------------------------------------------------------------
    def child_call(self, path: str, ctx: Ctx, chan: dict) -> Any:
        box = self.boxes[path]
        if box.kind == "stage":
            calls = []
            for child in box.children:
                calls.append(self.instance_call(child, ctx, chan))
            chan[box.output] = chan.get(self.boxes[box.children[-1]].output)
            return Call("nn.Sequential", calls)
        if box.kind == "shortcut" and self._simple_shortcut(path):
            return self.sequential(path, ctx, chan)
        return self.instance_call(path, ctx, chan)

    def sequential(self, path: str, ctx: Ctx, chan: dict) -> Call:
        items = [self.ctor(ref, ctx, chan) for _, ref in self.children[path]]
        return Call("nn.Sequential", items)

    def instance_call(self, path: str, ctx: Ctx, chan: dict) -> Call:
        """``Bottleneck(64, width=64, out=256, downsample=True)`` in the parent's terms."""
        box = self.boxes[path]
        info = self.class_of[path]
        in_value = self.graph.nodes[box.input]["shape"][0]
        in_sym = chan.get(box.input)
        args = [ctx.expr(in_sym, in_value)]
        mapping: dict[str, ir.Expr] = {IN: in_sym if in_sym is not None else _int(in_value)}
        call_exprs = self.call_exprs(path)
        own = self.context(path).env
        for name, pyname, _type, default in info.params[1:]:
            value = own[name]
            if box.kind != "block":
                call_exprs[name] = ir.NameRef(name=name)
            expr = call_exprs.get(name)
            text = ctx.expr(expr, value, _type if _type != "bool" else "bool")
            sym = ctx.sym(expr, value, _type)
            mapping[name] = sym if sym is not None else _literal_expr(value)
            if default is not None and text == default:
                continue
            args.append(f"{pyname}={text}")
        for name in info.net_params:
            if name in ctx.net_params:
                ctx.used.add(name)
                args.append(f"{_pyname(name)}={ctx.py[name]}")
            else:
                args.append(f"{_pyname(name)}={_lit(self.net.params[name])}")
            mapping.setdefault(name, ir.NameRef(name=name) if name in ctx.net_params
                               else _literal_expr(self.net.params[name]))
        for flag, _ in info.flags:
            if self.flag_values[path].get(flag):
                args.append(f"{flag}=True")
        out_value = self.graph.nodes[box.output]["shape"]
        if info.out_sym is not None and out_value:
            sym = _substitute(info.out_sym, mapping)
            chan[box.output] = ctx.sym(sym, out_value[0]) or _int(out_value[0])
        elif out_value:
            chan[box.output] = _int(out_value[0])
        return Call(info.name, args)

    def call_exprs(self, path: str) -> dict[str, ir.Expr]:
        """The spec's argument expressions of a block call (a stage's first instance gets its stride)."""
        box = self.boxes[path]
        if box.kind != "block":
            return {}
        parent = self.boxes.get(path.rsplit(".", 1)[0] if "." in path else "")
        stmt = self.stmts.get(_key(box.span))
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
        data = self.graph.nodes[node]
        stmt = self.stmts.get(_key(data["span"]))
        if not isinstance(stmt, ir.Apply) or stmt.name != data["op"]:
            return {}
        from ..ops import REGISTRY

        return ir.args_by_name(stmt.args, [spec.name for spec in REGISTRY[data["op"]].positional])

    def ctor(self, node: int, ctx: Ctx, chan: dict) -> Call:
        """The torch constructor of one op, as its catalogue entry describes it, with the
        spec's expressions where they hold for this instance."""
        from ..ops import REGISTRY

        data = self.graph.nodes[node]
        op, args, in_shape, shape = data["op"], data["args"], data["in_shapes"][0], data["shape"]
        spec = REGISTRY[op]
        exprs = self.arg_exprs(node)
        rank = len(in_shape) - 1
        in_sym = chan.get(data["inputs"][0])
        width = "out_channels" if "out_channels" in args else "out_features" if "out_features" in args else None
        overrides: dict[str, str] = {}
        width_sym = ctx.sym(exprs.get(width), args[width]) if width else None
        if width and data["shortcut"] and isinstance(self.stmts.get(_key(data["span"])), ir.Residual):
            # An automatic projection: its stride and width come from the shapes, so spell
            # them as the residual body does.
            body = self._body_chan(node, chan)
            overrides[width] = ctx.match(args[width], "int", 0, body)
            width_sym = ctx.sym(body, args[width])
            if "stride" in args:
                overrides["stride"] = ctx.match(args["stride"], "tuple", rank, *self._body_strides(node))
        code_args = CodeArgs(self, spec, ctx, in_shape, args, exprs, overrides, in_sym)
        call = spec.code(code_args)
        # Channels for the next op: the op's width argument, else the input's when the op
        # keeps them (norms, pools, activations, a flatten of a 1x1 map), else the number.
        sym = None
        for candidate in (width_sym, in_sym):
            sym = ctx.sym(candidate, shape[0]) if candidate is not None and shape else None
            if sym is not None:
                break
        chan[node] = sym if sym is not None else (_int(shape[0]) if shape else None)
        return call

    def _body_chan(self, node: int, chan: dict) -> ir.Expr | None:
        """For a projection: the channel expression of the residual body it must match."""
        for unit in self.units_of_shortcut.get(self.graph.nodes[node]["container"], ()):
            return chan.get(unit.body_output)
        return None

    def _body_strides(self, node: int) -> list[ir.Expr]:
        """For a projection: the stride expressions written in its residual body, in order."""
        for unit in self.units_of_shortcut.get(self.graph.nodes[node]["container"], ()):
            body = range(unit.input + 1, unit.body_output + 1)
            return [e for n in body if (e := self.arg_exprs(n).get("stride")) is not None]
        return []

    def inline_chan(self, node: int, ctx: Ctx, chan: dict) -> ir.Expr | None:
        data = self.graph.nodes[node]
        shape = data["shape"]
        if not shape:
            return None
        a = chan.get(data["inputs"][0])
        if data["op"] == "concat" and len(shape) > 0:
            b = chan.get(data["inputs"][1])
            sym = _fold(ir.BinOp(op="+", left=a, right=b)) if a is not None and b is not None else None
        elif data["op"] == "zero_pad":
            sym = None
        else:
            sym = a
        return ctx.sym(sym, shape[0]) or _int(shape[0])

    # -- forward pieces --------------------------------------------------------------------
    def inline_op(self, node: int, ctx: Ctx) -> "Op":
        data = self.graph.nodes[node]
        op, args, line = data["op"], data["args"], data["span"]
        if op == "residual_add":
            return self.residual_op(node, ctx)
        if op in ("add", "mul"):
            sign = "+" if op == "add" else "*"
            return Op(node, data["inputs"], line, lambda v: f"{v[0]} {sign} {v[1]}")
        if op == "concat":
            if args.get("crop") == "center":
                self.helpers.add("_center_crop")
                dims = list(range(2, len(data["shape"]) + 1))
                return Op(node, data["inputs"], line,
                          lambda v: f"torch.cat([{v[0]}, _center_crop({v[1]}, {v[0]}, {dims!r})], 1)")
            return Op(node, data["inputs"], line, lambda v: f"torch.cat([{v[0]}, {v[1]}], 1)")
        if op == "zero_pad":
            self.uses_functional = True
            in_shape = data["in_shapes"][0]
            rank = len(in_shape) - 1
            stride = ", ".join("::" + ctx.match(s, "int", 0) for s in args["stride"])
            channels = ctx.match(args["channels"], "int", 0,
                                 _fold(ir.BinOp(op="-", left=_int(data["shape"][0]), right=_int(in_shape[0]))))
            pad = "(" + "0, 0, " * rank + f"0, {channels})"
            return Op(node, data["inputs"], line, lambda v: f"F.pad({v[0]}[:, :, {stride}], {pad})")
        raise NotImplementedError(op)  # pragma: no cover

    def residual_op(self, node: int, ctx: Ctx, shortcut_var: str | None = None) -> "Op":
        data = self.graph.nodes[node]
        args, line = data["args"], data["span"]
        stmt = self.stmts.get(_key(data["span"]))
        options = {o.name: o.value for o in getattr(stmt, "options", ())}
        scale, drop = args["scale"], args["drop_path"]
        scale_text = ctx.expr(options.get("scale"), scale, "float")
        drop_text = ctx.expr(options.get("drop_path"), drop, "float")
        plain = scale == 1.0 and drop == 0.0 and "scale" not in options and "drop_path" not in options

        def rhs(v: list[str]) -> str:
            body = v[0]
            if drop != 0.0 or "drop_path" in options:
                self.helpers.add("_drop_path")
                body = f"_drop_path({body}, {drop_text}, self.training)"
            if scale != 1.0 or "scale" in options:
                body = f"{body} * {scale_text}"
            return f"{body} + {v[1]}"

        return Op(node, data["inputs"], line, rhs, kind="add" if plain else "expr")

    def optional_merge(self, node: int, unit, local: str) -> "Op":
        op = self.residual_op(node, self._dummy_ctx)
        op.optional = local
        op.inputs = (unit.body_output, unit.input)
        return op

    _dummy_ctx = Ctx({}, {}, set())

    def forward(self, path: str, ops: list["Op"], box: Container) -> tuple[list[str], set[str]]:
        """Straight-line code; a name is reused or deleted as soon as its value is dead."""
        last: dict[int, int] = {}
        for index, op in enumerate(ops):
            for n in op.inputs:
                last[n] = index
        last[box.output] = len(ops)
        in_name = "x"
        if box.kind == "network":
            label = self.graph.nodes[box.input]["label"]
            in_name = _pyname(label) if label and label.isidentifier() else "x"
        var: dict[int, str] = {box.input: in_name}
        live: set[str] = {in_name}
        lines: list[str] = []
        inplace: set[str] = set()
        inner = INDENT * 2
        for index, op in enumerate(ops):
            if op.node in var:  # a container that hands back its input: nothing to run
                continue
            ins = [var[n] for n in op.inputs]
            dead = [n for n in dict.fromkeys(op.inputs) if last.get(n) == index]
            mutable = {n for n in dead if n != box.input and op.inputs.count(n) == 1 and
                       self.graph.nodes[n]["op"] in MUTABLE_PRODUCERS}
            comment = f"  # {self.where(op.span)}"
            temporaries: set[str] = set()
            if op.optional is not None:  # torchvision's optional downsample
                ident = self._fresh("identity", live)
                lines += [f"{inner}{ident} = {ins[1]}{comment}",
                          f"{inner}if self.{op.optional} is not None:",
                          f"{inner}{INDENT}{ident} = self.{op.optional}({ins[1]}){comment}"]
                ins[1] = ident
                temporaries.add(ident)
            label = op.local if op.local and not re.fullmatch(r"\d+|.*_\d+", op.local) else None
            if op.kind == "add" and op.inputs[0] in mutable:
                target = var[op.inputs[0]]
                lines.append(f"{inner}{target} += {ins[1]}{comment}")
            else:
                if label and label.isidentifier() and last.get(op.node, -1) > index + 1:
                    target = self._fresh(_pyname(label), live - {var[n] for n in dead})
                elif dead:
                    target = var[dead[0]]
                else:
                    target = self._fresh("identity" if self.graph.nodes[op.node]["shortcut"] else "out", live)
                if op.kind == "module" and op.op == "relu" and op.inputs[0] in mutable and \
                        var[op.inputs[0]] == target:
                    inplace.add(op.local)
                lines.append(f"{inner}{target} = {op.rhs(ins)}{comment}")
            var[op.node] = target
            freed = ({var[n] for n in dead} | temporaries) - {target}
            live = (live - freed) | {target}
            freed.discard(in_name)
            if freed and self._allocates_later(ops, index):
                lines.append(f"{inner}del {', '.join(sorted(freed))}")
        lines.append(f"{inner}return {var[box.output]}")
        return [f"{INDENT}def forward(self, {in_name}: torch.Tensor) -> torch.Tensor:"] + lines, inplace

    @staticmethod
    def _fresh(base: str, live: set[str]) -> str:
        name, index = base, 1
        while name in live:
            name = f"{base}_{index}"
            index += 1
        return name

    def _allocates_later(self, ops: list["Op"], index: int) -> bool:
        for op in ops[index + 1:]:
            if op.kind == "module" and op.op == "relu":
                continue
            if op.kind == "add":
                continue
            return True
        return False

    # -- text --------------------------------------------------------------------------------
    def class_body(self, path: str, ctx: Ctx, params, net_params, flags, init, forward) -> str:
        box = self.boxes[path]
        sig: list[str] = []
        if box.kind == "network":
            sig = [f"{py}: {t} = {d}" for _, py, t, d in params]
        else:
            sig = [f"{ctx.py[IN]}: int"]
            extra = [(name, py, t, d) for name, py, t, d in params[1:]]
            extra += [(n, _pyname(n), self.net_types.get(n, "int"), None) for n in net_params]
            rest = [f"{py}: {t}" + (f" = {d}" if d is not None else "") for _, py, t, d in extra]
            rest += [f"{flag}: bool = False" for flag, _ in flags]
            if rest:
                sig += ["*"] + rest
        head = f"{INDENT}def __init__(self, {', '.join(sig)}) -> None:" if sig else \
            f"{INDENT}def __init__(self) -> None:"
        if len(head) > LINE_LENGTH:
            head_lines = [f"{INDENT}def __init__(", f"{INDENT * 2}self,"] + \
                [f"{INDENT * 2}{s}," for s in sig] + [f"{INDENT}) -> None:"]
        else:
            head_lines = [head]
        body = head_lines + [f"{INDENT * 2}super().__init__()"]
        for name, value in self.frozen.items() if box.kind == "network" else ():
            py = ctx.py[name]
            body += [f"{INDENT * 2}if {py} != {_lit(value)}:",
                     f"{INDENT * 3}raise ValueError(",
                     f"{INDENT * 4}{_lit(name + ' changes what resdsl resolved when it wrote this file; ')}",
                     f"{INDENT * 4}{_lit('regenerate it with resdsl compile -D ' + name + '=VALUE -o FILE.py')}",
                     f"{INDENT * 3})"]
        body += init
        return "\n".join(body + [""] + forward)

    def assemble(self) -> str:
        header = [
            f"# Generated by resdsl from {self.file} (network {self.net.name}); edit the spec, not this file.",
            "# Parameters: " + (", ".join(f"{k}={_lit(v)}" for k, v in self.signature.items()) or "none"),
            f'"""PyTorch model ``{self.net.name}``, generated by resdsl: standalone, imports only torch."""',
            "",
            "from __future__ import annotations",
            "",
            "import torch",
        ]
        if self.uses_functional or "_drop_path" in self.helpers or "ChannelLayerNorm" in self.helpers:
            header.append("import torch.nn.functional as F")
        header.append("from torch import nn")
        parts = ["\n".join(header)]
        for helper in ("ChannelLayerNorm", "_center_crop", "_drop_path"):
            if helper in self.helpers:
                parts.append(HELPERS[helper])
        for info in self.classes:
            parts.append(f"class {info.name}(nn.Module):\n{INDENT}\"\"\"{info.doc}\"\"\"\n\n{info.body}")
        return "\n\n\n".join(parts) + "\n"


@dataclass
class Op:
    """One forward statement before names are chosen."""

    node: int
    inputs: tuple[int, ...]
    span: Any  # where in the spec (file and line) the statement comes from
    rhs: Callable[[list[str]], str]
    kind: str = "expr"  # module | child | add | expr
    local: str | None = None
    op: str | None = None
    optional: str | None = None


def _mentioned(stmts) -> set[str]:
    """Every name the statements' expressions refer to (nested bodies included)."""
    names: set[str] = set()
    for stmt in stmts:
        for arg in (*getattr(stmt, "args", ()), *getattr(stmt, "options", ())):
            names |= _names(arg.value)
        if isinstance(stmt, ir.Stage):
            names |= _names(stmt.count)
        if isinstance(stmt, ir.Residual):
            names |= _mentioned(stmt.body) | _mentioned(stmt.shortcut or ())
    return names


def _literal_expr(value: Any) -> ir.Expr:
    if isinstance(value, bool):
        return ir.BoolLit(value=value)
    if isinstance(value, int):
        return ir.IntLit(value=value)
    return ir.FloatLit(value=float(value))


def _coerce(value: Any, type_: str) -> Any:
    if type_ == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _helper_sources() -> dict[str, str]:
    """Source of the helpers a generated file may need, from their one definition."""
    from . import layers

    return {name: inspect.getsource(getattr(layers, name)).rstrip()
            for name in ("ChannelLayerNorm", "_center_crop", "_drop_path")}


HELPERS = _helper_sources()


# ---- public API ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Generated source and the names to use it by.

    >>> import resdsl
    >>> src = generate(resdsl.loads("network n:\\n    input x: [4]\\n    fc: linear 2\\n"))
    >>> src.class_name, src.filename.startswith("<resdsl:n:")
    ('N', True)
    """

    text: str
    class_name: str
    filename: str

    def module_class(self) -> type:
        """The network class, compiled from :attr:`text` (cached per text)."""
        return getattr(load_source(self), self.class_name)


def _perturbed(value: Any) -> Any:
    if type(value) is bool:
        return not value
    if type(value) is int:
        return value + 1
    return value * 0.5 + 0.25


#: Work allowed to the perturbation checks of :func:`_frozen_params`, in elaborated ops
#: summed over all re-elaborations: a few times the network's size plus a constant; each
#: re-elaboration also costs ``CHECK_COST`` ops, so many parameters cannot add up either.
CHECK_BUDGET_FACTOR = 4
CHECK_BUDGET_BASE = 8192
CHECK_COST = 64

_NET = "net"  # a symbol of the flow analysis: ("net", name) is a network parameter
_ARG = "arg"  # ("arg", name) is a parameter of the block being summarised


class _Flow:
    """Which network parameters reach which positions, read from the IR alone.

    ``used``: parameters some evaluated expression mentions (the others change nothing).
    ``hard``: parameters that reach a position the generator always writes as a literal:
    a stage count (the number of instances), a residual's shortcut policy, a ref option
    or a ``defaults`` statement. Each block is summarised once, over symbols of its own
    parameters and of the network's, and the summary is mapped at every call.
    """

    def __init__(self, net: "Net"):
        from ..ops import user_ops

        self.ops = user_ops()
        self.blocks: dict[str, ir.Block] = dict(net.blocks)
        for block in net.ir.blocks:
            self.blocks.setdefault(block.name, block)
        self.net_names = {p.name for p in net.ir.params}
        self.summaries: dict[str, tuple[set, set]] = {}
        self.active: set[str] = set()
        self.cyclic = False
        env = {name: {(_NET, name)} for name in self.net_names}
        self.used: set = set()
        self.hard: set = set()
        for expr in net.ir.input.shape:
            self.used |= self.deps(expr, env)
        self.body(net.ir.body, env, self.used, self.hard)

    @staticmethod
    def deps(expr: ir.Expr, env: dict[str, set]) -> set:
        found: set = set()
        for name in _names(expr):
            found |= env.get(name, set())
        return found

    def body(self, stmts, env: dict[str, set], used: set, hard: set) -> None:
        for stmt in stmts:
            if isinstance(stmt, ir.Defaults):
                for arg in stmt.args:
                    found = self.deps(arg.value, env)
                    used |= found
                    hard |= found
            elif isinstance(stmt, ir.Apply):
                for arg in stmt.args:
                    used |= self.deps(arg.value, env)
                if stmt.name not in self.ops and stmt.name in self.blocks:
                    self.call(self.blocks[stmt.name], stmt.args, {}, env, used, hard)
            elif isinstance(stmt, ir.Stage):
                found = self.deps(stmt.count, env)
                used |= found
                hard |= found
                extra = {o.name: o.value for o in stmt.options if o.name == "stride"}
                for arg in (*stmt.args, *stmt.options):
                    used |= self.deps(arg.value, env)
                if stmt.block in self.blocks:  # the first instance takes the stride option
                    self.call(self.blocks[stmt.block], stmt.args, extra, env, used, hard)
                    if extra:
                        self.call(self.blocks[stmt.block], stmt.args, {}, env, used, hard)
            elif isinstance(stmt, ir.Residual):
                for option in stmt.options:
                    found = self.deps(option.value, env)
                    used |= found
                    if option.name not in ("scale", "drop_path"):
                        hard |= found
                self.body(stmt.body, env, used, hard)
                self.body(stmt.shortcut or (), env, used, hard)
            elif isinstance(stmt, ir.Ref):
                for option in stmt.options:
                    found = self.deps(option.value, env)
                    used |= found
                    hard |= found

    def call(self, block: ir.Block, args, extra: dict, env: dict[str, set], used: set, hard: set) -> None:
        """Map ``block``'s summary through one call's argument expressions."""
        given = {**ir.args_by_name(args, [p.name for p in block.params]), **extra}
        bound: dict[str, set] = {}
        for param in block.params:
            if param.name in given:
                bound[param.name] = self.deps(given[param.name], env)
            elif param.default is not None:  # evaluated among the network's and earlier parameters
                scope = {n: {(_NET, n)} for n in self.net_names} | bound
                bound[param.name] = self.deps(param.default, scope)
                used |= bound[param.name]
        inner_used, inner_hard = self.summary(block)

        def mapped(symbols: set) -> set:
            out: set = set()
            for kind, name in symbols:
                out |= bound.get(name, set()) if kind == _ARG else {(kind, name)}
            return out

        used |= mapped(inner_used)
        hard |= mapped(inner_hard)

    def summary(self, block: ir.Block) -> tuple[set, set]:
        if block.name in self.summaries:
            return self.summaries[block.name]
        if block.name in self.active:  # recursion: a checked net has none; be conservative
            self.cyclic = True
            return set(), set()
        self.active.add(block.name)
        env = {n: {(_NET, n)} for n in self.net_names}
        env.update({p.name: {(_ARG, p.name)} for p in block.params})
        used: set = set()
        hard: set = set()
        self.body(block.body, env, used, hard)
        self.active.discard(block.name)
        self.summaries[block.name] = (used, hard)
        return used, hard

    def names(self, symbols: set) -> set[str]:
        return {name for kind, name in symbols if kind == _NET}


def _rebuilt(net: "Net", params: dict[str, Any], max_nodes: int) -> tuple["Net | None", int]:
    """``net`` elaborated again from its in-memory IR with other parameter values, under
    the caller's limits (and at most ``max_nodes`` ops); (None, cost) when it fails."""
    from dataclasses import replace

    from ..api import Net
    from ..elaborate import elaborate
    from ..errors import ErrorList
    from ..passes import PIPELINE

    errors = ErrorList()
    limits = replace(net.limits, max_nodes=max(1, min(net.limits.max_nodes, max_nodes)))
    graph = elaborate(net.ir, net.blocks, errors, params, plain=net.plain, limits=limits,
                      shortcut=None if net.plain else net.shortcut)
    cost = graph.number_of_nodes()
    if not errors:
        for check in PIPELINE:
            check(graph, errors)
    if errors:
        return None, cost
    return Net(net.ir, graph, net.filename, graph.graph["params"], net.plain, net.shortcut,
               net.blocks, net.limits, net.inputs), cost


def _frozen_params(net: "Net") -> dict[str, Any]:
    """Network parameters the generated code does not express in general.

    A parameter is live when changing it changes nothing in the generated code but
    its default: everything it feeds was written as an expression of it. The IR
    tells most parameters apart: one that no evaluated expression mentions, and that
    the code is not written in terms of, is live; one that reaches a stage count, a shortcut policy, a ref option or a ``defaults``
    statement is frozen. Each remaining one is checked by elaborating the in-memory
    IR again (never the file) with it changed and comparing the generated code,
    under the net's own limits and a total budget: parameters left when the budget
    is spent are frozen, which is always correct, only less general.
    """
    if not net.params:
        return {}
    flow = _Flow(net)
    if flow.cyclic:  # pragma: no cover - elaboration refuses recursive blocks
        return dict(net.params)
    generator = Generator(net, signature=net.params)
    base = generator.run()
    used = flow.names(flow.used) | generator.mentioned
    hard = flow.names(flow.hard)
    frozen = {name: value for name, value in net.params.items() if name in hard}
    candidates = [name for name in net.params if name in used and name not in hard]
    budget = CHECK_BUDGET_FACTOR * net.num_ops + CHECK_BUDGET_BASE
    for name in candidates:
        value = net.params[name]
        if budget < CHECK_COST or type(value) not in (bool, int, float):
            frozen[name] = value
            continue
        other = None
        try:
            other, cost = _rebuilt(net, {**net.params, name: _perturbed(value)}, budget - CHECK_COST)
            budget -= cost + CHECK_COST
            same = other is not None and Generator(other, signature=net.params).run() == base
        except (SpecError, Problem, NotImplementedError):
            same = False
        if not same:
            frozen[name] = value
    return {name: frozen[name] for name in net.params if name in frozen}


def generate(net: "Net") -> Source:
    """Standalone PyTorch source for ``net``: deterministic, imports only torch."""
    frozen = _frozen_params(net)
    gen = Generator(net, frozen=frozen)
    text = gen.run()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    name = _pyname(net.name) if net.name.isidentifier() else "net"
    return Source(text, gen.class_of[""].name, f"<resdsl:{name}:{digest}>")


def load_source(source: Source) -> types.ModuleType:
    """Compile and run generated ``source`` as a module (the one exec in resdsl).

    The text comes from :func:`generate` only, never from a spec. It is registered
    with :mod:`linecache` (tracebacks, ``inspect.getsource``, TorchScript) and in
    :data:`sys.modules` (pickling classes within this process).
    """
    module_name = "resdsl.generated." + source.filename.strip("<>").replace(":", "_")
    lines = source.text.splitlines(keepends=True)
    linecache.cache[source.filename] = (len(source.text), None, lines, source.filename)
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__resdsl_source__", None) == source.text:
        return cached
    module = types.ModuleType(module_name, "resdsl generated model")
    module.__file__ = source.filename
    module.__resdsl_source__ = source.text
    code = compile(source.text, source.filename, "exec")
    sys.modules[module_name] = module
    exec(code, module.__dict__)  # noqa: S102 - generated code only, see the module docstring
    return module
