"""Bounded work (issue 7, guarantee 2): every limit is a located error, raised fast,
before any allocation; nesting never surfaces as a RecursionError."""

from __future__ import annotations

import sys
import time

import pytest

import resdsl
from resdsl import Limits, SpecError

HEAD = "network n:\n    input x: [3]\n"


#: CPU seconds within which a limit is hit (the issue's bound; CPU time, so a loaded
#: machine does not fail the suite).
CPU_BOUND_S = 2.0


def _error(text: str, located: bool = True, **kwargs) -> SpecError:
    start = time.process_time()
    with pytest.raises(SpecError) as info:
        resdsl.loads(text, **kwargs)
    assert time.process_time() - start < CPU_BOUND_S, "a limit must be hit quickly"
    err = info.value
    assert not located or all(d.span.located for d in err.diagnostics), err.render()
    err.render()
    return err


# These inputs probe nesting limits with files over the default size limit (64 KiB);
# raise it so the nesting limit is what they meet, still within the CPU bound.
BIG_FILES = Limits(max_file_bytes=1_000_000)


def _where(err: SpecError) -> tuple[int, int]:
    return err.diagnostics[0].span.line, err.diagnostics[0].span.column


# ---- ops, repeats, depth, recursion ----------------------------------------------------
def test_node_limit_is_configurable_and_names_the_stage():
    text = HEAD + "    block b:\n        relu\n        relu\n    layer: stage b x 30\n"
    assert resdsl.loads(text).num_ops == 60
    err = _error(text, limits=Limits(max_nodes=50))
    assert _where(err) == (6, 5) and "limit of 50" in err.diagnostics[0].message


def test_runaway_stage_is_refused_after_one_instance_with_default_limits():
    block = "".join("        relu\n" for _ in range(20))
    err = _error(HEAD + f"    block b:\n{block}    stage b x 90000\n")
    assert _where(err)[0] == 24 and f"{Limits().max_nodes:,}" in err.diagnostics[0].message


def test_nested_stages_are_refused_quickly():
    text = HEAD + ("    block a:\n        relu\n        relu\n"
                   "    block b:\n        stage a x 1000\n"
                   "    stage b x 1000\n")
    err = _error(text)
    assert "ops" in err.diagnostics[0].message


def test_repeat_limit():
    err = _error(HEAD + "    block b:\n        relu\n    stage b x 100001\n")
    assert _where(err) == (5, 15) and "100,000" in err.diagnostics[0].message
    err = _error(HEAD + "    block b:\n        relu\n    stage b x 5\n", limits=Limits(max_repeat=4))
    assert "over the limit of 4" in err.diagnostics[0].message


def test_block_nesting_depth_limit_names_the_call():
    blocks = "".join(f"    block b{i}:\n        b{i + 1}\n" for i in range(80)) + "    block b80:\n        relu\n"
    err = _error(HEAD + blocks + "    b0\n")
    assert "nested more than 64 deep" in err.diagnostics[0].message
    assert err.diagnostics[0].span.line > 2


def test_unlabelled_residuals_count_toward_depth():
    """Regression: unlabelled residual bodies shared the scope's depth, so 60 blocks of
    60 nested residuals hit Python's recursion limit, reported at the network's name."""
    lines = [HEAD.rstrip("\n")]
    for i in range(60):
        lines.append(f"    block b{i}:")
        pad = "        "
        for _ in range(60):
            lines.append(pad + "residual:")
            pad += "    "
        lines.append(pad + (f"b{i + 1}" if i < 59 else "relu"))
    lines.append("    b0")
    err = _error("\n".join(lines) + "\n", limits=BIG_FILES)
    assert "nested more than 64 deep" in err.diagnostics[0].message
    assert err.diagnostics[0].span.line > 3


@pytest.mark.parametrize("blocks, line", [
    ("    block a:\n        a\n", 4),
    ("    block a:\n        b\n    block b:\n        a\n", 6),
    ("    block a:\n        b\n    block b:\n        c\n    block c:\n        stage a x 2\n", 8),
])
def test_recursive_blocks_are_errors(blocks, line):
    err = _error(HEAD + blocks + "    a\n")
    assert any("uses itself" in d.message for d in err.diagnostics)
    assert err.diagnostics[0].span.line == line


# ---- numbers and sizes -----------------------------------------------------------------
@pytest.mark.parametrize("expr", ["2147483647 * 2", "-2147483647 - 2", "65536 * 65536",
                                  "max(2147483649, 1)", "2147483649", "-2147483649"])
def test_integer_magnitude_limit(expr):
    err = _error(HEAD + f"    linear {expr}\n")
    assert "out of range" in err.diagnostics[0].message and err.diagnostics[0].span.line == 3


@pytest.mark.parametrize("literal", ["9" * 25, "9" * 5000, "3x" + "9" * 5000], ids=["25", "5000", "kernel"])
def test_huge_integer_literals_are_errors_not_value_errors(literal):
    """Regression: int() of a literal over 4,300 digits raised ValueError."""
    text = "network n:\n    input x: [3, 8, 8]\n    conv " + literal + ", 4\n"
    err = _error(text)
    assert "out of range" in err.diagnostics[0].message and _where(err)[0] == 3


@pytest.mark.parametrize("value", ["1e400", "9" * 400, "nan", 10 ** 5000, float("inf")],
                         ids=["1e400", "400-digits", "nan", "int-10**5000", "inf"])
def test_overrides_obey_the_same_bounds(value):
    """Regression: -D w=<400 digits> for a float parameter raised OverflowError."""
    err = _error("network n(w: float = 1.0, k: int = 2):\n    input x: [3]\n    residual scale=w:\n"
                 "        linear 3\n", w=value, k=value)
    assert {d.span.line for d in err.diagnostics} == {1}
    # "nan" is not a number as a spec spells numbers (it is a word): refused before any range check.
    wanted = "not a valid" if value == "nan" else "out of range"
    assert any(wanted in d.message for d in err.diagnostics)


def test_weight_of_a_trillion_elements_is_an_error_not_an_allocation():
    err = _error("network n:\n    input x: [1000000]\n    fc: linear 1000000\n")
    assert _where(err) == (3, 5) and "parameters" in err.diagnostics[0].message
    limits = Limits(max_weight_elements=100)
    err = _error(HEAD + "    linear 100\n", limits=limits)
    assert "over the limit of 100" in err.diagnostics[0].message


def test_activation_size_limit():
    err = _error("network n:\n    input x: [3, 64, 64]\n    upsample 100000\n")
    assert _where(err)[0] == 3 and "elements" in err.diagnostics[0].message
    err = _error("network n:\n    input x: [3, 100000, 100000, 100]\n    relu\n")
    assert _where(err)[0] == 2


def test_file_size_limit(tmp_path):
    big = HEAD + "    relu\n" * 200
    err = _error(big, located=False, limits=Limits(max_file_bytes=1000))  # about the whole file
    assert "1,000" in err.diagnostics[0].message or "1000" in err.diagnostics[0].message
    path = tmp_path / "big.res"
    path.write_text(big)
    with pytest.raises(SpecError) as info:
        resdsl.load(path, limits=Limits(max_file_bytes=1000))
    assert "over the limit" in info.value.diagnostics[0].message


# ---- nesting: located errors, never RecursionError ------------------------------------
DEEP = 3000


@pytest.mark.parametrize("expr", [
    "(" * DEEP + "1" + ")" * DEEP,
    "-" * DEEP + "1",
    "+".join(["1"] * DEEP),
    "min(" * DEEP + "1" + ", 1)" * DEEP,
], ids=["parentheses", "unary-minus", "long-sum", "nested-min"])
def test_deep_expressions_are_located_errors(expr):
    limit = sys.getrecursionlimit()
    text = HEAD + f"    linear {expr}\n"
    try:
        resdsl.loads(text)
    except SpecError as err:
        assert err.diagnostics[0].span.line == 3
        assert "nested more than" in err.diagnostics[0].message or "parenthes" in err.render()
    assert sys.getrecursionlimit() == limit


def test_moderate_nesting_still_works():
    assert resdsl.loads(HEAD + "    linear " + "(" * 60 + "2" + ")" * 60 + "\n").output_shape == (2,)
    assert resdsl.loads(HEAD + "    linear " + "-" * 60 + "2\n").output_shape == (2,)


def test_deep_indentation_is_a_located_error():
    body = "".join(" " * (4 * i + 4) + "residual:\n" for i in range(400)) + " " * 1604 + "relu\n"
    err = _error(HEAD + body, limits=BIG_FILES)
    assert err.diagnostics[0].span.line > 3


def test_huge_single_indent_is_a_located_error():
    err = _error(HEAD + "    relu\n" + " " * 100_000 + "relu\n", limits=BIG_FILES)
    assert err.diagnostics[0].span.line == 4


@pytest.mark.parametrize("opener", ["[", "{"])
def test_deep_yaml_flow_collections_are_located_and_fast(opener):
    closer = {"[": "]", "{": "}"}[opener]
    text = "network: n\ninput: 'x: [3]'\nbody: " + opener * 100_000 + closer * 100_000 + "\n"
    err = _error(text, fmt="yaml", limits=BIG_FILES)
    assert _where(err)[0] == 3 and "nested more than" in err.diagnostics[0].message


def test_deep_yaml_block_nesting_is_located():
    body = "".join("  " * i + "- residual:\n" for i in range(1, 300)) + "  " * 300 + "- relu\n"
    err = _error("network: n\ninput: 'x: [3]'\nbody:\n" + body, fmt="yaml", limits=BIG_FILES)
    assert "nested more than" in err.diagnostics[0].message


def test_yaml_brackets_in_comments_and_quotes_do_not_count():
    text = ("# " + "[" * 150 + "\nnetwork: n\ninput: 'x: [3]'\n"
            "body:\n  - \"linear 2\"  # " + "{" * 150 + "\n  - 'relu'\n")
    assert resdsl.loads(text, fmt="yaml").output_shape == (2,)


def test_independent_limit_errors_are_all_reported():
    text = ("network n:\n    input x: [1000000]\n"
            "    block b:\n        relu\n"
            "    a: linear 1000000\n"
            "    from input\n"
            "    stage b x 200000\n"
            "    add a\n")
    err = _error(text)
    lines = {d.span.line for d in err.diagnostics}
    assert {5, 7} <= lines
