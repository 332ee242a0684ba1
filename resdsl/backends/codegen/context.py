"""What one container instance's code can refer to, and the interfaces the catalogue's
``code`` and ``merge_code`` functions write through.

Every value written goes through :meth:`Ctx.expr` (or a literal through
:class:`~.params.Writes`), so the generator's record of what it wrote, which decides
the frozen parameters, is complete by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ... import ir
from ...errors import Problem
from ...expr import evaluate
from ...graph import op_node
from ...ops.base import OMIT, TorchArgs, batch_of
from .forms import as_kind, evaluate_form, unknown
from .params import Writes
from .text import IN, Call, compact, expression_size, lit, names, normalise, source, v1_expression

#: The largest expression (in nodes) written as an expression rather than its value.
MAX_EXPRESSION_SIZE = 15
#: ... and the longest as text: a longer one is a line black would break.
MAX_EXPRESSION_TEXT = 40

if TYPE_CHECKING:  # pragma: no cover
    from .generator import Generator


@dataclass
class Ctx:
    """Names one instance's code can use: their values, forms and Python spelling."""

    env: dict[str, Any]  # visible names (spec names, and IN) -> this instance's values
    py: dict[str, str]  # visible names -> Python identifiers
    net_params: set[str]  # network parameters visible unshadowed (may be passed on by name)
    writes: Writes
    forms: dict[str, Any] = field(default_factory=dict)  # visible names -> their forms
    used: set[str] = field(default_factory=set)
    # (let name, its Python, its spec expression): computed at the top of __init__
    lets: list[tuple[str, str, ir.Expr]] = field(default_factory=list)
    path: str = ""  # the container whose class this is

    def expr(self, expr: ir.Expr | None, value: Any, form: Any, kind: str = "int", rank: int = 0) -> str:
        """``expr`` as Python if it gives ``value`` for this instance, else ``value``'s
        literal; ``form`` is the value's form, for the record of what was written."""
        sym = self.sym(expr, value, kind, rank)
        if sym is None:
            self.writes.literal(form)
            return lit(value)
        self.used |= names(sym)
        self.writes.expression(self.form(sym, value, kind, rank), form)
        return source(sym, self.py)[0]

    def form(self, expr: ir.Expr, value: Any, kind: str, rank: int) -> Any:
        try:
            return as_kind(evaluate_form(expr, self.forms), kind, rank)
        except (ArithmeticError, KeyError, TypeError):  # pragma: no cover - evaluate() accepted it
            return unknown(value, frozenset().union(*(getattr(f, "deps", frozenset()) for f in self.forms.values())))

    def sym(self, expr: ir.Expr | None, value: Any, kind: str = "int", rank: int = 0) -> ir.Expr | None:
        if expr is None or not names(expr) <= set(self.env) or not v1_expression(expr):
            return None  # v2 expressions (comparisons, channels(), ...) are written as their values
        if expression_size(expr) > MAX_EXPRESSION_SIZE or len(source(expr, self.py)[0]) > MAX_EXPRESSION_TEXT:
            # Channels followed through many merges (a DenseNet's running concat, ShuffleNet's
            # chunk and concat) would grow without bound: write the number instead.
            return None
        try:
            got = normalise(evaluate(expr, self.env), kind, rank)
        except Problem:
            return None
        if got != normalise(value, kind, rank) or type(compact(got)) is not type(compact(value)):
            return None
        return expr

    def match(self, value: Any, form: Any, kind: str, rank: int, *candidates: ir.Expr | None) -> str:
        """A shape-derived value: the first candidate expression (or parameter) that gives it."""
        params = [ir.NameRef(name=n) for n in self.env if n != IN and
                  isinstance(self.env[n], int) and not isinstance(self.env[n], bool)]
        for cand in (*candidates, *params):
            if cand is not None and not isinstance(cand, ir.IntLit) and self.sym(cand, value, kind, rank):
                return self.expr(cand, value, form, kind, rank)
        self.writes.literal(form)
        return lit(value)


class RecordedArgs(Mapping[str, Any]):
    """An op's resolved arguments; reading one directly (as a ``code`` function may, to
    choose a spelling) records it as written literally."""

    def __init__(self, values: dict, forms: dict, writes: Writes):
        self._values, self._forms, self._writes = values, forms, writes

    def __getitem__(self, name: str) -> Any:
        value = self._values[name]
        self._writes.literal(self._forms.get(name))
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class RecordedShape(tuple):
    """An op's input shape; reading a size directly (as a ``code`` function may) records it
    as written literally. Its length, the rank, is structure."""

    def __new__(cls, shape: tuple, forms: tuple, writes: Writes) -> "RecordedShape":
        self = super().__new__(cls, shape)
        self._forms, self._writes = forms, writes
        return self

    def __getitem__(self, index: Any) -> Any:
        self._writes.literal(self._forms[index])
        return tuple.__getitem__(self, index)

    def __iter__(self) -> Iterator[int]:
        self._writes.literal(self._forms)
        return tuple.__iter__(self)


class CodeArgs(TorchArgs):
    """An op's constructor as Python source: the spec's expression of each argument where it
    gives this instance's value, else a literal (the op's ``code`` asks, see resdsl.ops)."""

    def __init__(self, gen: "Generator", spec: Any, ctx: Ctx, node: int, exprs: dict, overrides: dict,
                 in_sym: ir.Expr | None):
        data = op_node(gen.graph, node)
        self.gen, self.spec, self.ctx = gen, spec, ctx
        self.values, self.forms = data.args, gen.dependence.args[node]
        # A source (a learnable tensor) has no input: an empty shape, so rank() is -1.
        self.shape = data.in_shapes[0] if data.inputs else ()
        self.in_forms = gen.dependence.shapes[data.inputs[0]] if data.inputs else ()
        self.in_shape = RecordedShape(self.shape, self.in_forms, ctx.writes)
        self.args = RecordedArgs(self.values, self.forms, ctx.writes)
        self.exprs, self.overrides, self.in_sym = exprs, overrides, in_sym

    def arg(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        arg_spec = self.spec.arg(name)
        expr = self.exprs.get(name)
        if expr is None and arg_spec is not None and arg_spec.same_as:
            expr = self.exprs.get(arg_spec.same_as)  # e.g. a pool's stride written as its kernel
        kind = arg_spec.kind if arg_spec else "int"
        return self.ctx.expr(expr, self.values[name], self.forms.get(name), kind, self.rank)

    def value(self, name: str) -> Any:
        return self.values[name]

    def channels(self) -> str:
        return self.ctx.expr(self.in_sym, self.shape[0], self.in_forms[0])

    def features(self) -> str:
        if self.rank == 0:
            return self.channels()
        self.ctx.writes.literal(self.in_forms[-1])
        return lit(self.shape[-1])

    def lit(self, value: Any) -> str:
        return lit(value, exact=True)  # a constant as the op gives it (sizes go through arg())

    def kw(self, name: str, torch_default: Any) -> Any:
        if name not in self.overrides and name not in self.exprs and \
                compact(self.values[name]) == compact(torch_default):
            self.ctx.writes.literal(self.forms.get(name))  # left out: torch's constant default
            return OMIT
        return self.arg(name)

    def call(self, callee: str, *positional: Any, **keywords: Any) -> Call:
        if not callee.startswith("nn."):
            self.gen.helpers.add(callee)  # a helper class of resdsl.ops.torch_layers
        parts = list(positional) + [f"{k}={v}" for k, v in keywords.items() if v is not OMIT]
        return Call(callee, parts)


class MergeWriter:
    """What a merge's ``merge_code`` asks (:class:`resdsl.ops.merge.MergeCode`): values are
    literals here, since ``forward`` sees no ``__init__`` arguments."""

    def __init__(self, gen: "Generator", node: int, inputs: list[str], attributes: dict | None = None):
        data = op_node(gen.graph, node)
        self.gen = gen
        self.inputs = inputs
        self.attributes = attributes or {}  # argument -> ``self.NAME`` set in __init__
        self.args = RecordedArgs(data.args, gen.dependence.args[node], gen.writes)
        self.rank = len(data.in_shapes[0]) - 1
        # Per-sample shapes (their ranks are structure, not sizes the code writes).
        self.shapes = tuple(tuple(int(d) for d in shape) for shape in data.in_shapes)
        self.out_shape = tuple(int(d) for d in data.shape)
        kinds = tuple(batch_of(d.op, d.args) for d in (op_node(gen.graph, n) for n in data.inputs))
        self.batched = tuple(kind != "none" for kind in kinds)
        self.single = tuple(kind == "one" for kind in kinds)
        self.options = {o.name for o in getattr(data.stmt, "options", ())} - gen.eval_neutral(node)
        self.module: str | None = None  # ``self.NAME`` of an op with a module and a ``call``

    def lit(self, value: Any) -> str:
        return lit(value)

    def value(self, name: str) -> str:
        return self.attributes.get(name) or lit(self.args[name])

    def written(self, name: str) -> bool:
        return name in self.options

    def helper(self, name: str) -> str:
        if name == "F":
            self.gen.uses_functional = True
        else:
            self.gen.helpers.add(name)
        return name
