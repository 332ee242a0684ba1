"""Parameter values and argument keys: literals, conversions, and how much work an expression is."""

from __future__ import annotations

import re

from typing import Any, Iterable

from .. import ir
from ..expr import Value


def _expression_size(node: Any) -> int:
    """Expression nodes a statement (or a block's parameter defaults) evaluates, found
    without recursion; bodies are not included (they are counted as they are visited)."""
    roots: list[Any] = []
    if isinstance(node, ir.Block):
        roots = [p.default for p in node.params if p.default is not None]
    else:
        roots = list(ir.expressions(node))
    size, stack = 0, roots
    while stack:
        expr = stack.pop()
        size += 1
        stack.extend(ir.expr_children(expr))
    return size


def _typed(values: Iterable[Any]) -> tuple:
    """Values and their types, so a cache key tells 1, 1.0 and true apart.

    (Tuples in argument values are kernel sizes, whose entries are always ints.)
    """
    values = tuple(values)
    return values + tuple(map(type, values))


def _block_usage(block: ir.Block) -> str:
    parts = [p.name if p.default is None else f"{p.name}=..." for p in block.params]
    return f"usage: {block.name}({', '.join(parts)})"


#: A ``-D`` number is spelled as in a spec (INT and FLOAT of syntax/resdsl.lark), optionally
#: negative: Python's int() would also take '1_000', '+3' and Unicode digits such as '٣'.
_INT_TEXT = re.compile(r"-?[0-9]+")
_FLOAT_TEXT = re.compile(r"-?([0-9]+\.[0-9]*([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|\.[0-9]+([eE][+-]?[0-9]+)?)")


def _parse_literal(text: str) -> Value:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if _INT_TEXT.fullmatch(text):
        # int() of over 4,300 digits is itself an error: a huge number is out of range anyway.
        return int(text) if len(text) <= 21 else (-(2**64) if text[0] == "-" else 2**64)
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)
    return text


def _plain(value: Any) -> Any:
    """An API value as a plain bool, int, float or str (the base type's own copy, so no
    subclass method - ``__repr__``, ``__str__``, ``__index__`` - ever runs); other
    objects are returned as they are, and refused by ``_convert``."""
    if type(value) is bool:
        return value
    if isinstance(value, int):  # IntEnum, IntFlag, any int subclass
        return int.__index__(value)
    if isinstance(value, float):  # numpy.float64 and other float subclasses
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    return value


def _shown(value: Any) -> str:
    """An override as an error message shows it: short, and never str() of a huge int."""
    if type(value) not in (bool, int, float, str):  # never run a foreign __str__
        return f"<a {type(value).__name__} object>"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<a {value.bit_length():,}-bit integer>"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: A ``str`` parameter's value: a bare word as a spec writes one (an op, a block, a policy).
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _convert(value: Any, type_: str) -> Value | None:
    """A value for a parameter of ``type_``, or ``None`` when it does not fit."""
    if type_ == "str":
        return value if isinstance(value, str) and _WORD.fullmatch(value) else None
    if type_ == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if type_ == "int":
        return value if isinstance(value, int) else None
    try:
        return float(value)
    except OverflowError:  # an int past float range (-D x=<400 digits>); callers bound it
        return float("inf")
