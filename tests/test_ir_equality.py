"""Spans are plain values; IR equality leaves them out (text and YAML IR stay equal)."""

from __future__ import annotations

from resdsl import ir
from resdsl.errors import Span
from resdsl.syntax.text import parse_text

SOURCE = """network n:
    input x: [3, 8, 8]
    c1: conv 3x3, 4
    residual shortcut=B:
        conv 3x3, 4, stride=2
    add c1
"""


def test_spans_are_values_and_can_be_keys():
    here, there = Span("a.res", 1, 5, 1, 9), Span("a.res", 2, 5, 2, 9)
    assert here == Span("a.res", 1, 5, 1, 9) and here != there
    assert here != Span("b.res", 1, 5, 1, 9)
    assert {here: "first", there: "second"}[there] == "second"
    assert len({here, there, Span("a.res", 1, 5, 1, 9)}) == 2


def test_ir_equality_ignores_every_span_field():
    located = ir.Ref(kind="add", target="c1", span=Span("f", 3, 5, 3, 11), target_span=Span("f", 3, 9, 3, 11))
    elsewhere = ir.Ref(kind="add", target="c1", span=Span("g", 9, 1, 9, 7))
    assert located == elsewhere and hash(located) == hash(elsewhere)
    assert located != ir.Ref(kind="add", target="c2")
    assert located != ir.Ref(kind="mul", target="c1")


def test_ir_equality_compares_nested_nodes_and_types():
    one = ir.Apply(name="conv", args=(ir.Arg(value=ir.IntLit(value=4, span=Span("f", 1, 1))),))
    assert one == ir.Apply(name="conv", args=(ir.Arg(value=ir.IntLit(value=4)),))
    assert one != ir.Apply(name="conv", args=(ir.Arg(value=ir.IntLit(value=5)),))
    assert ir.IntLit(value=1) != ir.FloatLit(value=1.0)
    assert ir.NameRef(name="x") != "x"


def test_parsed_ir_keeps_distinct_spans_but_equals_a_reparse_elsewhere():
    first = parse_text(SOURCE, "first.res")
    moved = parse_text("\n\n" + SOURCE.replace("    ", "  "), "second.res")
    assert first == moved
    statements = first.networks[0].body
    spans = {stmt.span for stmt in statements}
    assert len(spans) == len(statements) == 3  # distinct keys: statements found by span
    assert all(span.file == "first.res" and span.located for span in spans)
