"""`resdsl analyze` does bounded work and never crashes while printing, whatever the spec.

Hostile shapes: thousands of residual units in a stage (exact path polynomials grow
as units**2 x digits), 2**6000 paths (beyond float and beyond Python's 4,300-digit
int-to-str limit), a receptive field of 2**3000 pixels and jumps of 2**a / 3**b
(Fractions that grow with every op), one block holding thousands of residuals.
Bounds are CPU time with the issue's generous 2 s, never wall-clock time.
"""

from __future__ import annotations

import json
import math
import time
from math import comb
from pathlib import Path

import pytest

import resdsl
from tests.random_dags import random_dag_cases
from resdsl.cli import main
from resdsl.analysis import paths, report
from resdsl.analysis.paths import path_moments
from resdsl.analysis.report import RF_CAP, _big, analyze, path_stats

CIFAR = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "cifar_resnet.res"
CPU_BOUND_S = 2.0

STAGE = """
network s(n: int = 5000):
    input x: [8]
    block unit:
        residual:
            fc: linear 8
            relu
    layer: stage unit x n
    head: linear 2
"""

DOUBLING = """
network d(n: int = 6000):
    input x: [4]
    block twice:
        a: linear 4
        add a
    s: stage twice x n
"""

FIELD = """
network rf(n: int = 3000):
    input x: [1, 1, 1]
    block down:
        conv 3x3, 1, stride=2, pad=1
    block wobble:
        conv 1x1, 1, stride=2
        upsample 3
        conv 3x3, 1, stride=2, pad=1
    a: stage wobble x n
    b: stage down x n
"""


def one_block_of_residuals(units: int) -> str:
    body = "".join("        residual:\n            linear 4\n            relu\n" for _ in range(units))
    return f"network many:\n    input x: [4]\n    block big:\n{body}    b: big\n"


def timed_analyze(net) -> tuple[report.Analysis, float]:
    start = time.process_time()
    report = analyze(net)
    text, data = report.render(), json.dumps(report.to_dict())
    return report, time.process_time() - start, text, data


def test_thousands_of_residual_units_are_answered_with_moments():
    """5,000 units: 2**5000 paths (beyond the exact bound), lengths 1 + Binomial(5000, 1/2)."""
    report, cpu, text, data = timed_analyze(resdsl.loads(STAGE))
    assert cpu < CPU_BOUND_S
    p = report.paths
    assert not p.exact and p.lengths == {} and p.count is None
    assert p.log2_count == pytest.approx(5000)
    assert (p.min_length, p.max_length, p.min_nonlinear, p.max_nonlinear) == (1, 5001, 0, 5000)
    assert float(p.effective_depth) == pytest.approx(1 + 5000 / 2)
    assert p.length_std == pytest.approx(math.sqrt(5000) / 2)
    assert "2^5000.0" in text and "too large to count exactly" in text
    result = json.loads(data)
    assert result["paths"] is None and result["paths_log2"] == pytest.approx(5000)
    assert result["path_stats"]["max_length"] == 5001


def test_resnet_with_1026_units_prints_its_exact_count(capsys):
    """-D n=342 exited 3 with OverflowError: 2**1026 does not fit a float."""
    assert main(["analyze", str(CIFAR), "-D", "n=342"]) == 0
    assert "309 digits (= 2^1026)" in capsys.readouterr().out
    assert main(["analyze", str(CIFAR), "-D", "n=342", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paths"] == 2 ** 1026


def test_more_paths_than_the_exact_bound_prints_and_dumps():
    """2**6000 paths through one length: no str() over 4,300 digits, no float()."""
    report, cpu, text, data = timed_analyze(resdsl.loads(DOUBLING))
    assert cpu < CPU_BOUND_S
    assert report.paths.count is None and report.paths.log2_count == pytest.approx(6000)
    assert report.paths.min_length == report.paths.max_length == 6000
    assert "2^6000.0" in text
    assert json.loads(data)["paths_log2"] == pytest.approx(6000)


def test_exact_count_survives_when_only_the_distribution_is_too_big():
    """ResNet-6002 (3,000 units): 2**3000 paths, under 2**EXACT_BITS, stays an exact int."""
    stats = path_stats(resdsl.load(CIFAR, n=1000, limits=resdsl.Limits(max_nodes=30_000)).graph)
    assert not stats.exact and stats.count == 2 ** 3000
    assert (stats.min_length, stats.max_length) == (2, 6002)
    assert float(stats.effective_depth) == pytest.approx(3002)


def test_huge_receptive_field_saturates():
    report, cpu, text, data = timed_analyze(resdsl.loads(FIELD))
    assert cpu < CPU_BOUND_S
    assert report.receptive_field == (RF_CAP, RF_CAP)
    assert ">=2^62x>=2^62" in text
    assert json.loads(data)["receptive_field"] == [RF_CAP, RF_CAP]


def test_jump_with_growing_denominators_stays_cheap():
    """conv /2, upsample x3, conv /2: the jump is 2**a / 3**b, exact Fractions would grow."""
    net = resdsl.loads(FIELD.replace("    b: stage down x n\n", ""))
    report, cpu, _, _ = timed_analyze(net)
    assert cpu < CPU_BOUND_S
    assert len(report.receptive_field) == 2
    assert all(isinstance(d, int) and 1 <= d <= RF_CAP for d in report.receptive_field)


def test_one_block_holding_thousands_of_residuals_is_measured_once():
    """Every unit of the block is measured over the whole block: once per (input, output)."""
    net = resdsl.loads(one_block_of_residuals(2000), limits=resdsl.Limits(max_file_bytes=131_072))
    report, cpu, _, _ = timed_analyze(net)
    assert cpu < CPU_BOUND_S
    assert len(report.blocks) == 2000 and {(b.min_nonlinear, b.max_nonlinear) for b in report.blocks} == {(0, 2000)}


def test_exact_work_is_bounded_by_the_budget(monkeypatch):
    """With a tiny budget the same network falls back to moments, deterministically, and
    the moments agree with the exact distribution."""
    graph = resdsl.load(CIFAR, n=3).graph
    exact = path_stats(graph)
    monkeypatch.setattr(paths, "EXACT_WORK", 10)
    approx = path_stats(graph)
    assert exact.exact and not approx.exact
    assert approx.count == exact.count == 2 ** 9
    assert (approx.min_length, approx.max_length) == (exact.min_length, exact.max_length)
    assert approx.effective_depth == pytest.approx(float(exact.effective_depth))
    assert approx.length_std == pytest.approx(exact.length_std)
    assert (approx.min_nonlinear, approx.max_nonlinear) == (exact.min_nonlinear, exact.max_nonlinear)


def test_moments_equal_the_exact_distribution_on_random_dags():
    for graph, costs, source, target, expected in random_dag_cases(seed=11):
        moments = path_moments(graph, costs.__getitem__, source, target)
        if not expected:
            assert moments is None
            continue
        total = sum(expected.values())
        mean = sum(k * c for k, c in expected.items()) / total
        var = sum(c * (k - mean) ** 2 for k, c in expected.items()) / total
        assert moments.log2_count == pytest.approx(math.log2(total))
        assert moments.mean == pytest.approx(mean)
        assert moments.var == pytest.approx(var, abs=1e-9)
        assert (moments.low, moments.high) == (min(expected), max(expected))


@pytest.mark.parametrize("number, expected", [
    (123, "123"),
    (2 ** 1026, "7.191e308, 309 digits (= 2^1026)"),  # float(2**1026) overflows
    (3 ** 5000, "about 2^7924.8"),  # 2,386 digits: printable, but past EXACT_BITS
    (7 ** 10000, "about 2^28073.5"),  # str() would raise: 8,451 digits
], ids=["small", "2^1026", "3^5000", "7^10000"])
def test_big_numbers_format_without_overflow(number, expected):
    assert _big(number) == expected


def test_unknown_count_formats_from_its_logarithm():
    assert _big(None, 5000.0) == "about 1.412e1505 (2^5000.0)"


def test_zoo_stays_exact():
    """The pinned figures: 2**27 paths for ResNet-56 and 2**600 for ResNet-1202, exactly."""
    assert analyze(resdsl.load(CIFAR, n=9)).paths.lengths == {2 + 2 * k: comb(27, k) for k in range(28)}
    report = analyze(resdsl.load(CIFAR, n=200))
    assert report.paths.exact and report.paths.count == 2 ** 600
