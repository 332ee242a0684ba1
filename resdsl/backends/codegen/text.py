"""Spelling: names, literals, the spec's expressions as Python, and black-like layout.

Only identifiers that passed the front end's checks (or names derived here) and
``repr()`` of exact int/float/bool/str/tuple values ever reach the output.
"""

from __future__ import annotations

import keyword
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ... import ir
from ...vocab import PYTHON_FUNCTIONS
from ...errors import Problem
from ...expr import evaluate
from ...vocab import GENERATED_NAMES

INDENT = "    "
LINE_LENGTH = 88
IN = "\0in"  # the name of a container's input channel count (not a spec identifier)
#: Names the generated code itself uses; a spec name equal to one gets a trailing ``_``.
RESERVED = GENERATED_NAMES


# ---- names and literals ---------------------------------------------------------------
def safe_file(filename: str) -> str:
    """The spec's base name for ``# file:line`` comments; odd names become ``spec``."""
    base = os.path.basename(filename)
    return base if re.fullmatch(r"[A-Za-z0-9_.+-]{1,80}", base) else "spec"


def camel(name: str) -> str:
    """``double_conv`` -> ``DoubleConv``, ``resnet50`` -> ``Resnet50``."""
    parts = [p for p in name.split("_") if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts) or "Net"
    return text if text[0].isalpha() else "N" + text


def pyname(name: str, taken: frozenset[str] | set[str] = RESERVED) -> str:
    while name in taken or keyword.iskeyword(name):
        name += "_"
    return name


def compact(value: Any) -> Any:
    """(3, 3) -> 3: torch expands an int to every spatial dimension."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]
    return value


def lit(value: Any, exact: bool = False) -> str:
    """A literal of generated code. Exact types only: a subclass of int or str could
    bring its own ``__repr__`` (normalised away at the API, refused here again).
    Sizes are written compactly (torch expands ``3`` to ``(3, 3)``) unless ``exact``: a
    shape such as a learnable tensor's ``(4, 4)`` or ``(4,)`` must stay a tuple."""
    value = value if exact else compact(value)
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


# ---- expressions: the spec's own, re-written as Python ------------------------------
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def names(expr: ir.Expr) -> set[str]:
    if isinstance(expr, ir.NameRef):
        return {expr.name}
    return set().union(*(names(e) for e in ir.expr_children(expr)))


#: Functions a ``let`` may use and still be computed by generated code: their Python names.
_LET_FUNCTIONS = {"min": "min", "max": "max", "int": "int", "round": "round", "make_divisible": "_make_divisible"}


def let_source(expr: ir.Expr, py: dict[str, str]) -> str | None:
    """A ``let``'s expression as Python over the names in ``py`` (``channels(input)`` is the
    class's input channels), or None where generated code cannot compute it."""
    converted = _computable(expr, py)
    return None if converted is None else source(converted, {**py, **{f: f for f in _LET_FUNCTIONS.values()}})[0]


def _computable(expr: ir.Expr, py: dict[str, str]) -> ir.Expr | None:
    if isinstance(expr, (ir.IntLit, ir.FloatLit)):
        return expr
    if isinstance(expr, ir.NameRef):
        return expr if expr.name in py else None
    if isinstance(expr, ir.FuncCall):
        if expr.func == "channels":
            only = expr.args[0] if len(expr.args) == 1 else None
            return ir.NameRef(name=IN) if isinstance(only, ir.NameRef) and only.name == "input" else None
        args = [_computable(a, py) for a in expr.args]
        if expr.func not in _LET_FUNCTIONS or None in args:
            return None
        return ir.FuncCall(func=_LET_FUNCTIONS[expr.func], args=tuple(args))
    if isinstance(expr, ir.BinOp):
        left, right = _computable(expr.left, py), _computable(expr.right, py)
        return None if left is None or right is None else ir.BinOp(op=expr.op, left=left, right=right)
    if isinstance(expr, ir.Neg):
        operand = _computable(expr.operand, py)
        return None if operand is None else ir.Neg(operand=operand)
    return None


def substitute_input(expr: ir.Expr) -> ir.Expr:
    """``channels(input)`` replaced by the class's input channels (``IN``), where it stands
    in arithmetic (``conv 1, channels(input)``, ``channels(input) // 4``)."""
    if isinstance(expr, ir.FuncCall) and expr.func == "channels" and len(expr.args) == 1 and \
            isinstance(expr.args[0], ir.NameRef) and expr.args[0].name == "input":
        return ir.NameRef(name=IN)
    if isinstance(expr, ir.BinOp):
        return ir.BinOp(op=expr.op, left=substitute_input(expr.left), right=substitute_input(expr.right))
    if isinstance(expr, ir.Neg):
        return ir.Neg(operand=substitute_input(expr.operand))
    if isinstance(expr, ir.FuncCall) and expr.func in PYTHON_FUNCTIONS:
        return ir.FuncCall(func=expr.func, args=tuple(substitute_input(a) for a in expr.args))
    return expr


def expression_size(expr: ir.Expr) -> int:
    return 1 + sum(expression_size(e) for e in ir.expr_children(expr))


def v1_expression(expr: ir.Expr) -> bool:
    """Whether ``expr`` uses only what :func:`source` writes as Python (arithmetic, min,
    max); other expressions are written as the value they give."""
    if not isinstance(expr, ir.V1_EXPRS) or (isinstance(expr, ir.FuncCall) and expr.func not in PYTHON_FUNCTIONS):
        return False
    return all(v1_expression(e) for e in ir.expr_children(expr))


def source(expr: ir.Expr, py: dict[str, str]) -> tuple[str, int]:
    """Python source of ``expr`` and its precedence (names through ``py``)."""
    if isinstance(expr, (ir.IntLit, ir.FloatLit, ir.BoolLit)):
        text = lit(expr.value)
        return text, (3 if text.startswith("-") else 4)
    if isinstance(expr, ir.KernelLit):
        return lit(tuple(expr.dims)), 4
    if isinstance(expr, ir.NameRef):
        return py[expr.name], 4
    if isinstance(expr, ir.Neg):
        text, prec = source(expr.operand, py)
        return "-" + (text if prec >= 3 else f"({text})"), 3
    if isinstance(expr, ir.FuncCall):
        return f"{expr.func}({', '.join(source(a, py)[0] for a in expr.args)})", 4
    prec = _PREC[expr.op]
    left, lp = source(expr.left, py)
    right, rp = source(expr.right, py)
    if lp < prec:
        left = f"({left})"
    if rp <= prec:
        right = f"({right})"
    return f"{left} {expr.op} {right}", prec


def substitute(expr: ir.Expr, mapping: dict[str, ir.Expr]) -> ir.Expr:
    if isinstance(expr, ir.NameRef):
        return mapping.get(expr.name, expr)
    if isinstance(expr, ir.BinOp):
        return fold(ir.BinOp(op=expr.op, left=substitute(expr.left, mapping),
                             right=substitute(expr.right, mapping)))
    if isinstance(expr, ir.Neg):
        return ir.Neg(operand=substitute(expr.operand, mapping))
    if isinstance(expr, ir.FuncCall):
        return ir.FuncCall(func=expr.func, args=tuple(substitute(a, mapping) for a in expr.args))
    return expr


def fold(expr: ir.BinOp) -> ir.Expr:
    """Constant arithmetic folded, and repeated terms collected: ``a + g + g`` is
    ``a + 2 * g`` (a DenseNet block's running concat: ``init + 5 * growth``)."""
    if isinstance(expr.left, ir.IntLit) and isinstance(expr.right, ir.IntLit) and \
            (expr.op in ("+", "-", "*") or (expr.op in ("//", "%") and expr.right.value != 0)):
        try:
            return ir.IntLit(value=evaluate(expr, {}))
        except Problem:  # pragma: no cover - out of range
            return expr
    if expr.op == "+":
        name, count = _multiple(expr.right)
        if name is not None:
            if _multiple(expr.left)[0] == name:
                return _times(_multiple(expr.left)[1] + count, name)
            if isinstance(expr.left, ir.BinOp) and expr.left.op == "+" and _multiple(expr.left.right)[0] == name:
                total = _multiple(expr.left.right)[1] + count
                return ir.BinOp(op="+", left=expr.left.left, right=_times(total, name))
    return expr


def _multiple(expr: ir.Expr) -> tuple[str | None, int]:
    """``g`` -> (g, 1), ``3 * g`` -> (g, 3); anything else (None, 0)."""
    if isinstance(expr, ir.NameRef):
        return expr.name, 1
    if isinstance(expr, ir.BinOp) and expr.op == "*" and isinstance(expr.left, ir.IntLit) and \
            isinstance(expr.right, ir.NameRef):
        return expr.right.name, expr.left.value
    return None, 0


def _times(count: int, name: str) -> ir.Expr:
    return ir.BinOp(op="*", left=ir.IntLit(value=count), right=ir.NameRef(name=name))


def int_expr(value: int) -> ir.Expr:
    return ir.IntLit(value=value)


def literal_expr(value: Any) -> ir.Expr:
    if isinstance(value, bool):
        return ir.BoolLit(value=value)
    if isinstance(value, int):
        return ir.IntLit(value=value)
    if isinstance(value, str):  # a str parameter's bare word
        return ir.NameRef(name=value)
    return ir.FloatLit(value=float(value))


def normalise(value: Any, kind: str, rank: int) -> Any:
    if kind == "tuple" and isinstance(value, int) and not isinstance(value, bool):
        return (value,) * rank
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def coerce(value: Any, type_: str) -> Any:
    if type_ == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def mentioned(stmts) -> set[str]:
    """Every name the statements' expressions refer to (nested bodies included)."""
    found: set[str] = set()
    for stmt in stmts:
        for expr in ir.expressions(stmt):
            found |= names(expr)
        if isinstance(stmt, ir.Apply):
            found.add(stmt.name)  # a str parameter naming the op to apply
        for body in ir.bodies(stmt):
            found |= mentioned(body)
    return found


# ---- a tiny pretty printer for constructor calls --------------------------------------
@dataclass
class Call:
    func: str
    args: list[Any]  # str | Call
    brackets: str = "()"  # "[]" for a list literal

    def flat(self) -> str:
        return f"{self.func}{self.brackets[0]}{', '.join(flat(a) for a in self.args)}{self.brackets[1]}"


@dataclass
class Cond:
    body: Any
    test: str

    def flat(self) -> str:
        return f"{flat(self.body)} if {self.test} else None"


def flat(node: Any) -> str:
    return node if isinstance(node, str) else node.flat()


def layout(node: Any, indent: str, prefix: str = "", suffix: str = "", room: int = 0) -> list[str]:
    """Black-like layout: one line if it fits (``room`` is kept free for a comment),
    else the arguments on one indented line, else one argument per line."""
    line = f"{indent}{prefix}{flat(node)}{suffix}"
    if len(line) + room <= LINE_LENGTH or isinstance(node, str):
        return [line]
    inner = indent + INDENT
    if isinstance(node, Cond):
        return ([f"{indent}{prefix}("] + layout(node.body, inner) +
                [f"{inner}if {node.test}", f"{inner}else None", f"{indent}){suffix}"])
    hugged = f"{inner}{', '.join(flat(a) for a in node.args)}"
    opening, closing = node.brackets
    if node.args and len(hugged) <= LINE_LENGTH and not any(isinstance(a, (Call, Cond)) for a in node.args):
        return [f"{indent}{prefix}{node.func}{opening}", hugged, f"{indent}{closing}{suffix}"]
    lines = [f"{indent}{prefix}{node.func}{opening}"]
    for arg in node.args:
        lines += layout(arg, inner, suffix=",")
    return lines + [f"{indent}{closing}{suffix}"]


def statement(target: str, node: Any, indent: str, comment: str) -> list[str]:
    lines = layout(node, indent, prefix=f"{target} = ", room=len(comment) + 2 if comment else 0)
    if comment:
        lines[-1] += f"  {comment}"
    return lines
