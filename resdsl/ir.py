"""The spec's intermediate representation: frozen pydantic models, one per construct.

The IR says what was written, not what it means: names are not yet resolved
(``conv`` and ``double_conv`` are both an :class:`Apply`), expressions are not
yet evaluated. Every node carries the :class:`~resdsl.errors.Span` it came from;
IR equality leaves spans out, so the text and YAML forms of one network give
equal IR while spans stay plain values.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict

from .errors import NOWHERE, Span
from .vocab import ParamType, RefKind


def _tuple_getter(names: list[str]) -> Callable[[Any], tuple]:
    """The named attributes as one tuple (``attrgetter`` runs in C; of one name it
    returns the bare value, so that case, like none, is spelled out)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        get = attrgetter(names[0])
        return lambda node: (get(node),)
    return lambda node: ()


class IRNode(BaseModel):
    """Frozen, and equal to another node of its type when every field but the spans is.

    Pydantic's own ``__eq__`` compares every field; this one skips the fields typed
    :class:`Span` (``span``, ``name_span``, ...). Nested nodes compare the same way.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    span: Span = NOWHERE

    # per class: a getter of its fields that are not spans, as one tuple (C speed)
    _compared: ClassVar[dict[type, Callable[[Any], tuple]]] = {}

    @classmethod
    def _key_of(cls) -> Callable[[Any], tuple]:
        getter = IRNode._compared.get(cls)
        if getter is None:
            names = [name for name, info in cls.model_fields.items() if info.annotation is not Span]
            getter = IRNode._compared[cls] = _tuple_getter(names)
        return getter

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        key = self._key_of()
        return key(self) == key(other)

    def __hash__(self) -> int:
        return hash((type(self), self._key_of()(self)))


# ---- expressions -------------------------------------------------------------
class IntLit(IRNode):
    value: int


class FloatLit(IRNode):
    value: float


class BoolLit(IRNode):
    value: bool


class KernelLit(IRNode):
    """``3x3``, ``1x7``, ``3x3x3``."""

    dims: tuple[int, ...]


class StrLit(IRNode):
    """``"block1-"`` (v2): a string, for names that are no identifier (a stage's prefix)."""

    value: str


class TupleExpr(IRNode):
    """``(1, s, s)`` (v2): a size with one entry per spatial dimension, from expressions."""

    items: tuple["Expr", ...]


class NameRef(IRNode):
    """A parameter, or a bare-word enum such as ``nearest``."""

    name: str


class BinOp(IRNode):
    op: Literal["+", "-", "*", "/", "//", "%"]
    left: "Expr"
    right: "Expr"


class Neg(IRNode):
    operand: "Expr"


class FuncCall(IRNode):
    """``min(a, b)`` and ``max(a, b)``."""

    func: str
    args: tuple["Expr", ...]


class Compare(IRNode):
    """``a == b``, ``a < b``, ... (v2): one comparison, not chained."""

    op: Literal["==", "!=", "<", "<=", ">", ">="]
    left: "Expr"
    right: "Expr"


class BoolOp(IRNode):
    """``a and b``, ``a or b`` (v2)."""

    op: Literal["and", "or"]
    left: "Expr"
    right: "Expr"


class Not(IRNode):
    """``not a`` (v2)."""

    operand: "Expr"


class IfExpr(IRNode):
    """``a if cond else b`` (v2)."""

    cond: "Expr"
    then: "Expr"
    orelse: "Expr"


Expr = Union[IntLit, FloatLit, BoolLit, KernelLit, StrLit, TupleExpr, NameRef, BinOp, Neg, FuncCall, Compare,
             BoolOp, Not, IfExpr]


def expr_children(expr: "Expr") -> tuple["Expr", ...]:
    """The sub-expressions of ``expr``: one place that knows every expression's shape,
    so walkers (names, sizes, rewriting) need no list of node types."""
    if isinstance(expr, (BinOp, Compare, BoolOp)):
        return (expr.left, expr.right)
    if isinstance(expr, (Neg, Not)):
        return (expr.operand,)
    if isinstance(expr, FuncCall):
        return expr.args
    if isinstance(expr, TupleExpr):
        return expr.items
    if isinstance(expr, IfExpr):
        return (expr.cond, expr.then, expr.orelse)
    return ()


#: Expression nodes of language v1: code generation rewrites only these as Python.
V1_EXPRS = (IntLit, FloatLit, BoolLit, KernelLit, NameRef, BinOp, Neg, FuncCall)


class Arg(IRNode):
    """A positional (``name is None``) or keyword argument."""

    name: Optional[str] = None
    value: Expr


# ---- statements --------------------------------------------------------------
class Apply(IRNode):
    """``[label:] NAME ARGS`` or ``[label:] NAME(ARGS)``: an op or a block."""

    label: Optional[str] = None
    name: str
    args: tuple[Arg, ...] = ()
    name_span: Span = NOWHERE


class Stage(IRNode):
    """``[label:] stage BLOCK(ARGS) x N [, stride=S]``."""

    label: Optional[str] = None
    block: str
    args: tuple[Arg, ...] = ()
    count: Expr
    options: tuple[Arg, ...] = ()
    name_span: Span = NOWHERE


class Residual(IRNode):
    """``[label:] residual [shortcut=P] [, drop_path=p] [, scale=s]:`` with its body."""

    label: Optional[str] = None
    options: tuple[Arg, ...] = ()
    body: tuple["Stmt", ...]
    shortcut: Optional[tuple["Stmt", ...]] = None
    shortcut_span: Span = NOWHERE


class Ref(IRNode):
    """``add L``, ``mul L``, ``concat L [, crop=center]``, ``from L``."""

    label: Optional[str] = None
    kind: RefKind
    target: str
    options: tuple[Arg, ...] = ()
    target_span: Span = NOWHERE


class Defaults(IRNode):
    """``defaults OP(KEY=VALUE, ...)``."""

    op: str
    args: tuple[Arg, ...] = ()
    name_span: Span = NOWHERE


class Let(IRNode):
    """``let NAME = EXPR`` (v2): a name for the rest of the body."""

    name: str
    value: Expr
    name_span: Span = NOWHERE


class If(IRNode):
    """``if COND:`` body, ``elif`` (a nested If in ``orelse``), ``else:`` body (v2)."""

    cond: Expr
    body: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] = ()


class Repeat(IRNode):
    """``repeat N:`` body (v2): the body's statements N times, in the enclosing scope."""

    count: Expr
    body: tuple["Stmt", ...]


class Sequential(IRNode):
    """``[label:] sequential:`` body (v2): a scope naming its children 0, 1, 2 like nn.Sequential."""

    label: Optional[str] = None
    body: tuple["Stmt", ...]


Stmt = Union[Apply, Stage, Residual, Ref, Defaults, Let, If, Sequential, Repeat]


def bodies(stmt: "Stmt") -> tuple[tuple["Stmt", ...], ...]:
    """The nested bodies of a statement (a residual's body and shortcut path, both
    branches of an ``if``, a sequential's body)."""
    if isinstance(stmt, Residual):
        return (stmt.body, stmt.shortcut or ())
    if isinstance(stmt, If):
        return (stmt.body, stmt.orelse)
    if isinstance(stmt, (Sequential, Repeat)):
        return (stmt.body,)
    return ()


def expressions(stmt: "Stmt") -> tuple["Expr", ...]:
    """The expressions written directly in a statement (not in its nested bodies)."""
    found = [arg.value for arg in (*getattr(stmt, "args", ()), *getattr(stmt, "options", ()))]
    if isinstance(stmt, Stage):
        found.append(stmt.count)
    elif isinstance(stmt, Let):
        found.append(stmt.value)
    elif isinstance(stmt, If):
        found.append(stmt.cond)
    elif isinstance(stmt, Repeat):
        found.append(stmt.count)
    return tuple(found)


# ---- definitions -------------------------------------------------------------
class Param(IRNode):
    name: str
    type: ParamType
    default: Optional[Expr] = None
    choices: tuple[str, ...] = ()  # v2: ``arch: str(large, small)``, the words a str takes


class Block(IRNode):
    name: str
    params: tuple[Param, ...] = ()
    body: tuple[Stmt, ...]


class Input(IRNode):
    name: str
    shape: tuple[Expr, ...]
    dtype: str = "float"  # v2: "int" for token ids (``input ids: [seq], int``)


class Network(IRNode):
    name: str
    params: tuple[Param, ...] = ()
    input: Input
    blocks: tuple[Block, ...] = ()
    body: tuple[Stmt, ...]


class Import(IRNode):
    path: str


class SpecFile(IRNode):
    """A parsed file: shared blocks, imports, and one or more networks."""

    imports: tuple[Import, ...] = ()
    blocks: tuple[Block, ...] = ()
    networks: tuple[Network, ...] = ()


def args_by_name(args: tuple[Arg, ...], names: list[str] | tuple[str, ...]) -> dict[str, Expr]:
    """Each argument's expression under the name it binds to: positional arguments
    take ``names`` in order, keyword arguments their own name."""
    bound = dict(zip(names, (a.value for a in args if a.name is None)))
    bound.update((a.name, a.value) for a in args if a.name is not None)
    return bound


for _model in (TupleExpr, BinOp, Neg, FuncCall, Compare, BoolOp, Not, IfExpr, Arg, Residual, If, Sequential, Repeat,
               Let, Block, Network):
    _model.model_rebuild()
