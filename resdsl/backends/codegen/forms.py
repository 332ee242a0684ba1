"""Symbolic values: a compiled value together with how it depends on the parameters.

A *form* is a value at the compiled parameters plus a canonical ``key`` and the set
``deps`` of network parameters it depends on. Two forms with equal keys are equal
for every parameter value (the converse need not hold: unequal keys only mean "not
proved equal", which callers treat as "may differ"). Integers are :class:`Sym`, an
``int`` that the catalogue's shape rules and argument defaults compute with
unchanged (``op.infer(shapes, args)`` with Syms inside gives Syms); other values
are :class:`Val`.

Integer keys are linear combinations of *atoms* plus a constant, so ``(x + 2 - 3) // 1
+ 1`` and ``x`` get one key; ``floor((L + k) / c)`` is normalised (constant part
reduced modulo ``c``, multiples of ``c`` pulled out, sign made positive), so a strided
"same" convolution ``(x - 1) // 2 + 1`` and ``-(-x // 2)`` both give ``ceil(x / 2)``.
Anything else (products of unknowns, min/max, float arithmetic) is an atom compared
structurally. A key grown past :data:`MAX_KEY_SIZE` is replaced by a fresh opaque
atom (keeping ``deps``), so deep chains cost linear time.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Union

from ... import ir
from ...vocab import PYTHON_FUNCTIONS

MAX_KEY_SIZE = 64
_EMPTY: frozenset[str] = frozenset()
_opaque_ids = itertools.count()


def _atom(tag: str, *parts: Any) -> tuple:
    """An atom: ``(tag, *parts, size)``; its size (nested keys included) is kept in it, so
    a key's size costs one pass over its terms."""
    return (tag, *parts, 1 + sum(_size(p) for p in parts if isinstance(p, tuple) and p and p[0] == "lin"))


def _size(key: tuple) -> int:
    """How big an integer key is (atoms and nested keys counted): bounds the work per operation."""
    return sum(atom[-1] for atom, _ in key[1])


def _lin_key(terms: dict, const: Any) -> tuple:
    return ("lin", frozenset((a, c) for a, c in terms.items() if c != 0), const)


def _terms(key: tuple) -> tuple[dict, Any]:
    return dict(key[1]), key[2]


class Sym(int):
    """An int (its compiled value) with a canonical key and the parameters it depends on."""

    key: tuple
    deps: frozenset[str]

    def __new__(cls, value: int, key: tuple | None = None, deps: frozenset[str] = _EMPTY) -> "Sym":
        self = super().__new__(cls, value)
        if key is not None and _size(key) > MAX_KEY_SIZE:
            key = _lin_key({_atom("opaque", next(_opaque_ids)): 1}, 0)
        self.key = _lin_key({}, int(value)) if key is None else key
        self.deps = deps
        return self

    @classmethod
    def atom(cls, value: int, atom: tuple, deps: frozenset[str]) -> "Sym":
        return cls(value, _lin_key({atom: 1}, 0), deps)

    @property
    def constant(self) -> bool:
        return not self.key[1]

    # -- linear arithmetic ----------------------------------------------------------
    def _combine(self, other: Any, sign: int, value: int) -> Any:
        other = _sym(other)
        if other is None:
            return NotImplemented
        terms, const = _terms(self.key)
        for atom, coef in other.key[1]:
            terms[atom] = terms.get(atom, 0) + sign * coef
        return Sym(value, _lin_key(terms, const + sign * other.key[2]), self.deps | other.deps)

    def __add__(self, other: Any) -> Any:
        return self._combine(other, 1, int(self) + int(other)) if _sym(other) is not None else NotImplemented

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        return self._combine(other, -1, int(self) - int(other)) if _sym(other) is not None else NotImplemented

    def __rsub__(self, other: Any) -> Any:
        other = _sym(other)
        return NotImplemented if other is None else other - self

    def scaled(self, factor: int) -> "Sym":
        terms, const = _terms(self.key)
        return Sym(int(self) * factor, _lin_key({a: c * factor for a, c in terms.items()}, const * factor),
                   self.deps)

    def __neg__(self) -> "Sym":
        return self.scaled(-1)

    def __pos__(self) -> "Sym":
        return self

    def __mul__(self, other: Any) -> Any:
        other = _sym(other)
        if other is None:
            return NotImplemented
        if other.constant:
            return self.scaled(other.key[2])
        if self.constant:
            return other.scaled(self.key[2])
        pair = tuple(sorted((self.key, other.key), key=repr))
        return Sym.atom(int(self) * int(other), _atom("product", *pair), self.deps | other.deps)

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> Any:
        other = _sym(other)
        if other is None:
            return NotImplemented
        value = int(self) // int(other)
        if other.constant and other.key[2] > 0:
            return _floor(self, other.key[2], value)
        return Sym.atom(value, _atom("div", self.key, other.key), self.deps | other.deps)

    def __rfloordiv__(self, other: Any) -> Any:
        other = _sym(other)
        return NotImplemented if other is None else other // self

    def __mod__(self, other: Any) -> Any:
        other = _sym(other)
        if other is None:
            return NotImplemented
        return self - other * (self // other)  # Python's % is defined this way

    def __rmod__(self, other: Any) -> Any:
        other = _sym(other)
        return NotImplemented if other is None else other % self

    def __repr__(self) -> str:
        return f"Sym({int(self)}, deps={sorted(self.deps)})"

    def __reduce__(self):  # pragma: no cover - never pickled; keep int's behaviour
        return (int, (int(self),))


def _sym(value: Any) -> Sym | None:
    if isinstance(value, Sym):
        return value
    if type(value) is int:
        return Sym(value)
    return None


def _floor(x: Sym, c: int, value: int) -> Sym:
    """``x // c`` for a constant ``c > 0``, in the normal form described above."""
    if c == 1:
        return x
    terms, const = _terms(x.key)
    whole = {a: k // c for a, k in terms.items() if k % c == 0}
    rest = {a: k for a, k in terms.items() if k % c}
    quotient, remainder = divmod(const, c) if isinstance(const, int) else (0, const)
    if not rest:
        return Sym(value, _lin_key(whole, quotient), x.deps)
    sign = 1
    if all(k < 0 for k in rest.values()):  # floor((-M + r) / c) = -floor((M - r + c - 1) / c)
        rest = {a: -k for a, k in rest.items()}
        remainder, sign = c - 1 - remainder, -1
    atom = _atom("floor", _lin_key(rest, remainder), c)
    terms = dict(whole)
    terms[atom] = sign
    return Sym(value, _lin_key(terms, quotient), x.deps)


class Val:
    """A non-integer value (float, bool, str, ...) with a structural key and its parameters."""

    __slots__ = ("value", "key", "deps")

    def __init__(self, value: Any, key: Any = None, deps: frozenset[str] = _EMPTY):
        self.value = value
        self.key = ("const", type(value).__name__, value) if key is None else key
        self.deps = deps

    def __repr__(self) -> str:
        return f"Val({self.value!r}, deps={sorted(self.deps)})"


Form = Union[Sym, Val, tuple]


# ---- forms of values ------------------------------------------------------------------
def parameter(name: str, value: Any) -> Form:
    """The form of network parameter ``name`` at ``value``."""
    deps = frozenset({name})
    if type(value) is int:
        return Sym.atom(value, _atom("p", name), deps)
    return Val(value, ("p", name), deps)


def constant(value: Any) -> Form:
    if type(value) is int:
        return Sym(value)
    if type(value) is tuple:
        return tuple(constant(v) for v in value)
    return Val(value)


def unknown(value: Any, deps: frozenset[str]) -> Form:
    """A value whose dependence is not understood: a fresh atom that depends on ``deps``."""
    if type(value) is tuple:
        return tuple(unknown(v, deps) for v in value)
    atom = _atom("opaque", next(_opaque_ids))
    if type(value) is int:
        return Sym.atom(value, atom, deps)
    return Val(value, atom, deps)


def value_of(form: Form) -> Any:
    if isinstance(form, tuple):
        return tuple(value_of(f) for f in form)
    if isinstance(form, Sym):
        return int(form)
    return form.value


def deps_of(form: Any) -> frozenset[str]:
    if isinstance(form, tuple):
        return frozenset().union(*(deps_of(f) for f in form))
    return getattr(form, "deps", _EMPTY)


def key_of(form: Any) -> Any:
    if isinstance(form, tuple):
        return tuple(key_of(f) for f in form)
    if isinstance(form, Sym):
        return form.key
    if isinstance(form, Val):
        return form.key
    return ("raw", type(form).__name__, form)


def as_kind(form: Form, kind: str, rank: int) -> Form:
    """The form as an argument of ``kind`` (an int given for a size is a cube, an int
    given for a float is that float: the key stays, as ``1 == 1.0``)."""
    if kind == "tuple" and isinstance(form, Sym):
        return (form,) * rank
    if kind == "float" and isinstance(form, Sym):
        return Val(float(form), form.key, form.deps)
    return form


def same(a: Form, b: Form) -> bool:
    """Proved equal for every parameter value."""
    return key_of(a) == key_of(b)


# ---- the spec's expressions, evaluated symbolically ---------------------------------------
def _opaque(expr: ir.Expr, env: Mapping[str, Form]) -> Form:
    """A v2 expression (a comparison, a conditional, ceil(), ...): its value, depending on
    every parameter it names; never proved equal to another form but itself."""
    from ...errors import Problem
    from ...expr import evaluate
    from .text import names

    used = sorted(n for n in names(expr) if n in env)
    try:
        value = evaluate(expr, {n: value_of(env[n]) for n in used})
    except Problem:
        raise ArithmeticError from None
    deps = frozenset().union(*(deps_of(env[n]) for n in used))
    return Val(value, ("opaque", expr, tuple(key_of(env[n]) for n in used)), deps)


def evaluate_form(expr: ir.Expr, env: Mapping[str, Form]) -> Form:
    """``expr`` over ``env``; mirrors :func:`resdsl.expr.evaluate` on values (which has
    already accepted the expression), and raises ``ArithmeticError`` where it would."""
    if isinstance(expr, (ir.IntLit, ir.FloatLit, ir.BoolLit)):
        return constant(expr.value)
    if isinstance(expr, ir.KernelLit):
        return tuple(Sym(d) for d in expr.dims)
    if isinstance(expr, ir.NameRef):
        return env[expr.name] if expr.name in env else Val(expr.name)  # a bare word
    if isinstance(expr, ir.Neg):
        operand = evaluate_form(expr.operand, env)
        if isinstance(operand, Sym):
            return -operand
        return Val(-operand.value, ("neg", key_of(operand)), deps_of(operand))
    if not isinstance(expr, ir.V1_EXPRS) or (isinstance(expr, ir.FuncCall) and expr.func not in PYTHON_FUNCTIONS):
        return _opaque(expr, env)
    if isinstance(expr, ir.FuncCall):
        args = [evaluate_form(a, env) for a in expr.args]
        pick: Callable = min if expr.func == "min" else max
        value = pick(value_of(a) for a in args)
        if all(isinstance(a, Sym) and a.constant for a in args):
            return constant(value)
        deps = frozenset().union(*(deps_of(a) for a in args))
        keys = tuple(key_of(a) for a in args)
        return Sym.atom(value, _atom(expr.func, *keys), deps) if type(value) is int else \
            Val(value, (expr.func, keys), deps)
    left, right = evaluate_form(expr.left, env), evaluate_form(expr.right, env)
    if isinstance(left, Sym) and isinstance(right, Sym) and expr.op != "/":
        if expr.op in ("//", "%") and int(right) == 0:
            raise ZeroDivisionError
        return {"+": left.__add__, "-": left.__sub__, "*": left.__mul__,
                "//": left.__floordiv__, "%": left.__mod__}[expr.op](right)
    a, b = value_of(left), value_of(right)
    if expr.op in ("/", "//", "%") and b == 0:
        raise ZeroDivisionError
    value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
             "//": lambda: a // b, "%": lambda: a % b}[expr.op]()
    return Val(value, (expr.op, key_of(left), key_of(right)), deps_of(left) | deps_of(right))
