"""Short-budget fuzzing: random valid specs build with torch's shapes; mutated specs
fail cleanly. The long campaign is ``python -m tests.fuzz --n 20000``."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resdsl
from resdsl.graph import op_node
from tests.fuzz import CPU_LIMIT_S, Case, Report, campaign, generate, mutate, run_case

torch = pytest.importorskip("torch")
from resdsl.backends.torch import observed_shapes  # noqa: E402


def _observed_equal_inferred(net) -> None:
    model = net.build().eval()
    with torch.no_grad():
        observed = observed_shapes(model, net, torch.zeros(2, *net.input_shape))
    assert observed, "no op was observed"
    for node, shape in observed.items():
        assert op_node(net.graph, node).shape == shape, op_node(net.graph, node).module


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_random_valid_specs_build_with_inferred_shapes(rng):
    gen = generate(rng)
    text = gen.text()
    net = resdsl.loads(text, "gen.res")
    assert net.output_shape == gen.expected, text
    _observed_equal_inferred(net)


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_yaml_twin_of_a_random_spec_gives_equal_ir(rng):
    gen = generate(rng)
    if gen.top_level_blocks:  # YAML has no file-level blocks; the text form then differs
        return
    assert resdsl.loads(gen.yaml(), "gen.yaml").ir == resdsl.loads(gen.text(), "gen.res").ir


@settings(max_examples=150, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_mutated_specs_fail_only_with_spec_errors(tmp_path_factory, rng):
    gen = generate(rng)
    text, names = mutate(rng, gen.text() if rng.random() < 0.6 else gen.yaml())
    report = Report()
    workdir = tmp_path_factory.mktemp("mut")
    run_case(Case(text, "mut.res", "+".join(names)), workdir, report, build=False, limit=CPU_LIMIT_S,
             limits=resdsl.Limits(max_nodes=20_000))
    assert not report.failures, report.failures[0]


def test_short_campaign_over_zoo_and_generated_specs():
    """A few hundred inputs through load and the CLI: no crash, no slow input, codes 0/1/2."""
    report = campaign(300, seed=7, cli_every=10, subprocess_every=150, build_every=6, compile_every=100)
    summary = report.summary()
    assert report.failures == [], report.failures[0]
    assert summary["inputs"] == 300
    assert set(report.cli_exit_codes) <= {0, 1, 2}
    assert summary["max_cpu_seconds_per_input"] < CPU_LIMIT_S == 2.0
    assert report.outcomes["ok"] > 0 and report.outcomes["SpecError"] > 0


def _load_after(seconds: float, busy: bool):
    """resdsl.load that first sleeps (wall time only) or spins (CPU time) for ``seconds``."""
    load = resdsl.load

    def slow_load(*args, **kwargs):
        if busy:
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
        else:
            time.sleep(seconds)
        return load(*args, **kwargs)

    return slow_load


def test_per_input_bound_is_cpu_time_not_wall_time(monkeypatch, tmp_path):
    """A loaded machine stretches wall time, not the work an input causes: waiting
    passes the bound, computing past it fails it."""
    spec = "network n:\n    input x: [4]\n    fc: linear 2\n"
    monkeypatch.setattr(resdsl, "load", _load_after(0.3, busy=False))
    waited = Report()
    run_case(Case(spec, "wait.res", "wait"), tmp_path, waited, build=False, limit=0.1)
    assert waited.failures == [] and waited.outcomes["ok"] == 1
    assert waited.wall_times[0] >= 0.3 > waited.times[0]
    assert waited.summary()["max_wall_seconds_per_input"] >= 0.3
    monkeypatch.setattr(resdsl, "load", _load_after(0.3, busy=True))
    spun = Report()
    run_case(Case(spec, "spin.res", "spin"), tmp_path, spun, build=False, limit=0.1)
    assert len(spun.failures) == 1 and "of CPU time (limit 0.1 s)" in spun.failures[0]
    assert spun.summary()["inputs_over_limit"] == 1


def test_generator_is_deterministic_per_seed():
    assert generate(random.Random(3)).text() == generate(random.Random(3)).text()


def test_stage_after_stage_of_a_shape_changing_block_builds():
    """Found by the fuzzer: two stages of one block with different arguments; the
    second's projection shortcut must be built for its own channel count."""
    net = resdsl.loads(
        "block dense(out: int):\n"
        "    residual:\n"
        "        linear out\n"
        "network g:\n"
        "    input x: [2]\n"
        "    stage dense(5) x 1\n"
        "    stage dense(2) x 3\n"
    )
    _observed_equal_inferred(net)


@pytest.mark.parametrize("text", [
    "network n:\n    input x: [3]\n    block b(stride: int = 1):\n        relu\n    stage b x 2, 3\n",
    "network n:\n    input x: [3]\n    block b(stride: int = 1):\n        relu\n    stage b x 2, s, stride=2\n",
])
def test_positional_stage_option_is_a_located_error(text):
    """Found by the fuzzer: a positional option after 'x N' raised AttributeError
    (a number) or pydantic's ValidationError (a name)."""
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.loads(text)
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.span.column) == (5, 18) and "keyword options" in diag.message
