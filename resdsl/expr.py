"""The expression evaluator: resdsl's own, small and total. Never Python ``eval``.

Values are ``int``, ``float``, ``bool``, kernel tuples (``3x3`` -> ``(3, 3)``) and
bare words (``nearest``), which stay strings. Integers stay within +-2**31.

>>> from resdsl.syntax.text import parse_fragment, file_locator
>>> from resdsl.errors import ErrorList
>>> stmt = parse_fragment("conv 3x3, (w + 1) * 2 // 3", "yaml_simple", file_locator("x"), ErrorList())
>>> evaluate(stmt.args[1].value, {"w": 8})
6
"""

from __future__ import annotations

import math
from typing import Mapping, Union

from . import ir
from .errors import Problem
from .shapes import format_dims
from .vocab import FUNCTIONS

Value = Union[int, float, bool, tuple, str]
INT_LIMIT = 2**31


def describe(value: Value) -> str:
    """How a value reads in an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return format_dims(value)
    if isinstance(value, str):
        return f"bare word '{value}'"
    return repr(value)


def type_name(value: Value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, tuple):
        return "kernel size"
    return "bare word"


def evaluate(node: ir.Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate ``node`` with parameter values ``env``; unknown names are bare words."""
    if isinstance(node, (ir.IntLit, ir.FloatLit, ir.BoolLit)):
        return _checked(node.value, node)
    if isinstance(node, ir.KernelLit):
        for dim in node.dims:
            _checked(dim, node)
        return node.dims
    if isinstance(node, ir.NameRef):
        return env.get(node.name, node.name)
    if isinstance(node, ir.Neg):
        value = _number(evaluate(node.operand, env), node.operand, "negate")
        return _checked(-value, node)
    if isinstance(node, ir.BinOp):
        left = _number(evaluate(node.left, env), node.left, node.op)
        right = _number(evaluate(node.right, env), node.right, node.op)
        return _checked(_apply(node, left, right), node)
    if isinstance(node, ir.FuncCall):
        values = [_number(evaluate(a, env), a, node.func) for a in node.args]
        if node.func not in FUNCTIONS or len(values) < 2:
            raise Problem(node.span, f"{node.func}() takes at least two numbers",
                          hint="write min(a, b) or max(a, b)")
        return min(values) if node.func == "min" else max(values)
    raise Problem(getattr(node, "span", None), "unsupported expression")  # pragma: no cover


def _apply(node: ir.BinOp, left, right):
    op = node.op
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0 and op in ("/", "//", "%"):
        raise Problem(node.span, "division by zero in an expression",
                      hint="check the parameter values; -D overrides can make a divisor 0")
    if op == "/":
        return left / right
    if op == "//":
        return left // right
    return left % right


def _number(value: Value, node: ir.Expr, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = None
        if isinstance(value, str):
            hint = f"'{value}' is not a parameter in scope; a bare word is only an option value such as 'nearest'"
        raise Problem(
            node.span,
            f"cannot use {describe(value)} ({type_name(value)}) in arithmetic ('{what}')",
            hint=hint,
        )
    return value


def _checked(value, node):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -INT_LIMIT <= value <= INT_LIMIT:
            raise Problem(node.span, f"integer {value} is out of range (limit is +-2**31)",
                          hint="use smaller numbers")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise Problem(node.span, f"expression gives {value}", hint="use finite numbers")
    if isinstance(value, float) and abs(value) > float(INT_LIMIT):
        raise Problem(node.span, f"number {value} is out of range (limit is +-2**31)",
                      hint="use smaller numbers")
    return value
