"""The safe expression evaluator."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from resdsl.errors import ErrorList, Problem
from resdsl.expr import INT_LIMIT, evaluate
from resdsl.syntax.text import file_locator, parse_fragment


def expr(text: str):
    errors = ErrorList()
    stmt = parse_fragment(f"op {text}", "yaml_simple", file_locator("e"), errors)
    assert not errors, errors.diagnostics
    return stmt.args[0].value


@pytest.mark.parametrize(
    "text, env, value",
    [
        ("1 + 2 * 3", {}, 7),
        ("(1 + 2) * 3", {}, 9),
        ("7 // 2", {}, 3),
        ("-7 // 2", {}, -4),
        ("7 % 3", {}, 1),
        ("7 / 2", {}, 3.5),
        ("-w + 1", {"w": 4}, -3),
        ("min(w, 3) * max(2, w)", {"w": 4}, 12),
        ("2.5e-1", {}, 0.25),
        ("3x3", {}, (3, 3)),
        ("nearest", {}, "nearest"),
        ("true", {}, True),
        ("w * 4 // groups", {"w": 64, "groups": 32}, 8),
    ],
)
def test_values(text, env, value):
    assert evaluate(expr(text), env) == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 // 0", "division by zero"),
        ("4 % (2 - 2)", "division by zero"),
        ("65536 * 65536", "out of range"),
        ("3x3 * 2", "arithmetic"),
        ("true + 1", "arithmetic"),
        ("widht * 2", "widht"),
    ],
)
def test_errors_are_problems_with_spans(text, message):
    with pytest.raises(Problem) as info:
        evaluate(expr(text), {"width": 3})
    assert message in info.value.message + (info.value.hint or "")
    assert info.value.span.line == 1


@given(st.integers(-1000, 1000), st.integers(-1000, 1000).filter(lambda b: b != 0))
def test_integer_arithmetic_agrees_with_python(a, b):
    for op in ("+", "-", "*", "//", "%"):
        text = f"a {op} b"
        assert evaluate(expr(text), {"a": a, "b": b}) == eval(f"{a} {op} ({b})")  # noqa: S307 - test oracle on ints


@given(st.integers(0, INT_LIMIT), st.integers(2, 4))
def test_results_never_leave_the_integer_range(a, k):
    value = a
    try:
        for _ in range(k):
            value = evaluate(expr("v * v"), {"v": value})
    except Problem:
        return
    assert abs(value) <= INT_LIMIT
