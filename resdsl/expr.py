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
from typing import Callable, Mapping, Optional, Union

from . import ir
from .errors import Problem
from .shapes import format_dims
from .vocab import FUNCTIONS, PYTHON_FUNCTIONS, TENSOR_FUNCTIONS

Value = Union[int, float, bool, tuple, str]
INT_LIMIT = 2**31
#: What ``channels(T)`` and ``dim(T, k)`` read: the per-sample shape of the tensor named T
#: in the scope being elaborated (None where shapes are unknown after an earlier error).
ShapeOf = Callable[[str, "ir.Expr"], Optional[tuple]]


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


def evaluate(node: ir.Expr, env: Mapping[str, Value], shape_of: ShapeOf | None = None) -> Value:
    """Evaluate ``node`` with parameter values ``env``; unknown names are bare words.
    ``shape_of`` answers ``channels(T)``/``dim(T, k)`` (elaboration passes its scope's)."""
    if isinstance(node, (ir.IntLit, ir.FloatLit, ir.BoolLit)):
        return _checked(node.value, node)
    if isinstance(node, ir.StrLit):
        return node.value
    if isinstance(node, ir.KernelLit):
        for dim in node.dims:
            _checked(dim, node)
        return node.dims
    if isinstance(node, ir.NameRef):
        value = env.get(node.name, node.name)
        if value is UNKNOWN:
            raise _Unknown(node.span)
        return value
    if isinstance(node, ir.Neg):
        value = _number(evaluate(node.operand, env, shape_of), node.operand, "negate")
        return _checked(-value, node)
    if isinstance(node, ir.BinOp):
        left = _number(evaluate(node.left, env, shape_of), node.left, node.op)
        right = _number(evaluate(node.right, env, shape_of), node.right, node.op)
        return _checked(_apply(node, left, right), node)
    if isinstance(node, ir.FuncCall):
        return _call(node, env, shape_of)
    if isinstance(node, ir.Compare):
        return _compare(node, evaluate(node.left, env, shape_of), evaluate(node.right, env, shape_of))
    if isinstance(node, ir.BoolOp):  # short-circuit, as Python: the other side may not apply
        left = _truth(evaluate(node.left, env, shape_of), node.left, node.op)
        if left == (node.op == "or"):
            return left
        return _truth(evaluate(node.right, env, shape_of), node.right, node.op)
    if isinstance(node, ir.Not):
        return not _truth(evaluate(node.operand, env, shape_of), node.operand, "not")
    if isinstance(node, ir.IfExpr):
        chosen = node.then if _truth(evaluate(node.cond, env, shape_of), node.cond, "if") else node.orelse
        return evaluate(chosen, env, shape_of)
    raise Problem(getattr(node, "span", None), "unsupported expression")  # pragma: no cover


_ARITY = {"min": (2, None), "max": (2, None), "ceil": (1, 1), "floor": (1, 1), "round": (1, 1),
          "int": (1, 1), "make_divisible": (2, 3), "channels": (1, 1), "dim": (2, 2)}
_USAGE = {"min": "min(a, b, ...)", "max": "max(a, b, ...)", "ceil": "ceil(x)", "floor": "floor(x)",
          "round": "round(x)", "int": "int(x)", "make_divisible": "make_divisible(value, divisor)",
          "channels": "channels(LABEL) or channels(input)", "dim": "dim(LABEL, k)"}


def _call(node: ir.FuncCall, env: Mapping[str, Value], shape_of: ShapeOf | None) -> Value:
    func = node.func
    low, high = _ARITY.get(func, (0, 0))
    if func not in FUNCTIONS or len(node.args) < low or (high is not None and len(node.args) > high):
        raise Problem(node.span, f"{func}() takes {_USAGE.get(func, 'other arguments')}",
                      hint=f"write {_USAGE.get(func, ', '.join(FUNCTIONS))}")
    if func in TENSOR_FUNCTIONS:
        return _tensor_function(node, env, shape_of)
    values = [_number(evaluate(a, env, shape_of), a, func) for a in node.args]
    if func in PYTHON_FUNCTIONS:
        return min(values) if func == "min" else max(values)
    x = values[0]
    if func == "make_divisible":  # torchvision's _make_divisible (MobileNet, EfficientNet)
        divisor = values[1]
        if isinstance(divisor, float) or divisor <= 0:
            raise Problem(node.args[1].span, f"make_divisible: the divisor must be a positive integer, "
                          f"not {describe(divisor)}", hint="write e.g. make_divisible(c * 1.4, 8)")
        minimum = divisor if len(values) < 3 else values[2]
        value = max(minimum, int(x + divisor / 2) // divisor * divisor)
        return _checked(value + divisor if value < 0.9 * x else value, node)
    if abs(x) > INT_LIMIT:
        raise Problem(node.span, f"number {x} is out of range (limit is +-2**31)", hint="use smaller numbers")
    result = {"ceil": math.ceil, "floor": math.floor, "round": round, "int": int}[func](x)
    return _checked(result, node)


def _tensor_function(node: ir.FuncCall, env: Mapping[str, Value], shape_of: ShapeOf | None) -> Value:
    target = node.args[0]
    if not isinstance(target, ir.NameRef):
        raise Problem(target.span, f"{node.func}() takes a tensor's label (or input), not an expression",
                      hint=f"write {_USAGE[node.func]}")
    if shape_of is None:
        raise Problem(node.span, f"{node.func}() reads a tensor, which is not available here",
                      hint="use it in a block or network body, where tensors exist")
    shape = shape_of(target.name, target)
    if shape is None:
        raise _Unknown(node.span)
    if node.func == "channels":
        return shape[0]
    index = evaluate(node.args[1], env, shape_of)
    if isinstance(index, bool) or not isinstance(index, int) or not -len(shape) <= index < len(shape):
        raise Problem(node.args[1].span, f"dim({target.name}, k): k must be an integer in "
                      f"[{-len(shape)}, {len(shape) - 1}] for {format_dims(shape)}, not {describe(index)}",
                      hint="k counts the per-sample dimensions from 0 (channels)")
    return shape[index]


#: The value of a ``let`` whose expression read a shape an earlier error left unknown:
#: what uses it is skipped (the earlier error is the one to report), not misreported.
UNKNOWN = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN"})()


class _Unknown(Problem):
    """A tensor's shape is unknown after an earlier error: not a new problem to report."""

    def __init__(self, span):
        super().__init__(span, "shape unknown after an earlier error")


def _compare(node: ir.Compare, left: Value, right: Value) -> bool:
    if node.op in ("==", "!="):
        if type_name(left) != type_name(right) and not (_is_number(left) and _is_number(right)):
            raise Problem(node.span, f"cannot compare {describe(left)} ({type_name(left)}) with "
                          f"{describe(right)} ({type_name(right)})",
                          hint="compare numbers with numbers, bare words with bare words")
        return (left == right) == (node.op == "==")
    a, b = _number(left, node.left, node.op), _number(right, node.right, node.op)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[node.op]


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _truth(value: Value, node: ir.Expr, what: str) -> bool:
    if not isinstance(value, bool):
        raise Problem(node.span, f"'{what}' needs true or false, not {describe(value)} ({type_name(value)})",
                      hint="write a comparison such as 'stride == 1'")
    return value


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
