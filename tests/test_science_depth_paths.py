"""Depth limits and gradient per path length (issue 20): the measurements and the routing."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

import resdsl
from resdsl.analysis.probes import dropped, routed
from resdsl.analysis.report import path_stats
from resdsl.graph import residual_units

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

CIFAR = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "cifar_resnet.res"


# ---- gradient per path length ---------------------------------------------------------
def test_path_counts_are_binomial_and_match_the_graph():
    from resdsl.experiments.path_gradients import path_counts

    for units in (9, 27, 54):
        counts = path_counts(units)
        assert math.isclose(sum(c / 2 ** units for c in counts), 1.0)
        mode = max(range(units + 1), key=counts.__getitem__)
        assert mode in (units // 2, (units + 1) // 2) and counts[units // 2] == counts[(units + 1) // 2]
    # resdsl's own path analysis of ResNet-56: C(27, k) paths of 2 + 2k weight layers
    lengths = path_stats(resdsl.load(CIFAR, n=9, size=8).graph).lengths
    assert lengths == {2 + 2 * k: c for k, c in enumerate(path_counts(27))}


def _model(n: int = 1, **build):
    net = resdsl.load(CIFAR, n=n, size=8)
    torch.manual_seed(0)
    return net, net.build(**build).train()


def _input_gradient(model, x, router=None, choice=None):
    if router is not None:
        router.route(choice)
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).square().sum(), x)
    return grad


def test_paths_sum_to_the_full_gradient():
    """The backward pass is linear: the 2^n single-path gradients add up to the full one,
    and routing changes neither the forward pass nor the ordinary gradient."""
    net, model = _model(n=1)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    plain_out, plain_grad = model(x).detach(), _input_gradient(model, x)
    units = residual_units(net.graph)
    with routed(model, net.graph, units) as router:
        assert torch.equal(model(x).detach(), plain_out)
        assert torch.allclose(_input_gradient(model, x, router, None), plain_grad)
        paths = [_input_gradient(model, x, router, c)
                 for c in itertools.product([False, True], repeat=len(units))]
    assert len(paths) == 8 and all(p.norm() > 0 for p in paths)
    assert torch.allclose(sum(paths), plain_grad, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(paths[0], plain_grad, atol=1e-5, rtol=1e-4)


def test_path_of_length_zero_is_the_identity_path():
    """With zero-init bodies (F = 0) the forward pass equals the network with every unit
    dropped, so the path through no body must have that network's gradient."""
    net, model = _model(n=2, zero_init_residual=True)
    units = residual_units(net.graph)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with dropped(model, net.graph, units):
        identity = _input_gradient(model, x)
    with routed(model, net.graph, units) as router:
        shortest = _input_gradient(model, x, router, [False] * len(units))
        longest = _input_gradient(model, x, router, [True] * len(units))
    assert torch.allclose(shortest, identity, atol=1e-6)
    assert longest.abs().max() == 0  # a zeroed batchnorm passes no gradient through the body


def test_a_plain_unit_cannot_be_routed():
    net = resdsl.load(CIFAR, n=1, size=8, plain=True)
    model = net.build()
    with pytest.raises(ValueError, match="no shortcut"):
        with routed(model, net.graph, residual_units(net.graph)):
            pass


def test_effective_range_and_decay():
    from resdsl.experiments.path_gradients import decay_rate, effective_range, path_counts

    assert math.isclose(decay_rate([3 * 0.5 ** k for k in range(10)]), 0.5)
    assert effective_range([0, 0, 1, 0, 0]) == (2, 2)
    low, high = effective_range(path_counts(54))
    assert (low + high) / 2 == 27 and 19 <= low < 27  # symmetric, about 27 +- 1.645 * 3.67


def test_path_gradients_resnet56_at_init(tmp_path):
    """At initialisation the gradient of one path falls with its length (Veit et al., Fig. 6a)."""
    from resdsl.experiments import path_gradients

    result = path_gradients.main(["--n", "9", "--steps", "2", "--batches", "1", "--samples", "2",
                                  "--out", str(tmp_path)])
    assert (tmp_path / "path_gradients.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "path_gradients.json").read_text())
    entry = saved["networks"]["resnet56"]
    assert entry["units"] == 27 and entry["counts"] == path_gradients.path_counts(27)
    init = entry["init"]
    assert init["decay_per_unit"] < 0.9
    assert init["per_path"][0] > 100 * init["per_path"][-1]
    assert math.isclose(sum(init["total_share"]), 1.0)
    low, high = init["effective_range"]
    assert 0 <= low <= init["peak"] <= high <= 27
    assert result["networks"]["resnet56"]["init"]["per_path"] == init["per_path"]


@pytest.mark.slow
def test_path_gradients_quick(tmp_path):
    from resdsl.experiments import path_gradients

    result = path_gradients.main(["--quick", "--n", "3", "--out", str(tmp_path)])  # ResNet-20 only
    assert set(result["networks"]) == {"resnet20"}
    for entry in result["networks"].values():
        # after training the gradient decays faster per unit and moves to shorter paths
        # (the peak itself is too noisy with 4 samples per length to compare)
        init, trained = entry["init"], entry["trained"]
        assert trained["decay_per_unit"] < init["decay_per_unit"]
        assert trained["mean_length"] < init["mean_length"]
        assert trained["effective_range"][1] <= init["effective_range"][1]


# ---- depth limits ---------------------------------------------------------------------
def test_the_four_families_share_their_layers():
    from resdsl.experiments.depth_limits import FAMILIES, SPEC

    counts = {name: f.load(units=5, width=64, spec=SPEC) for name, f in FAMILIES.items() if f.main}
    assert {name: net.num_weight_layers for name, net in counts.items()} == dict.fromkeys(counts, 12)
    params = {name: net.num_params for name, net in counts.items()}
    assert params["plain"] == params["residual (SkipInit)"] - 5  # one alpha per unit
    assert params["plain+bn"] == params["residual+bn"] > params["plain"]
    assert not any(u.shortcut != "none" for u in residual_units(counts["plain"].graph))
    assert all(u.shortcut == "identity" for u in residual_units(counts["residual+bn"].graph))


def test_skipinit_units_start_as_the_identity():
    from resdsl.experiments.depth_limits import FAMILIES, SPEC

    net = FAMILIES["residual (SkipInit)"].load(units=3, width=16, spec=SPEC)
    model = net.build()
    x = torch.randn(4, 16)
    assert torch.equal(model.blocks(x.relu()), x.relu())


def test_residual_32_trains_and_plain_110_does_not(tmp_path):
    """The experiment's own budget (500 steps): the SkipInit residual MLP of 32 layers
    ends below the threshold, the plain one of 110 layers does not."""
    from resdsl.experiments import depth_limits

    residual = depth_limits.main(["--families", "residual (SkipInit)", "--depths", "32", "--seeds", "0",
                                  "--out", str(tmp_path / "r")])
    plain = depth_limits.main(["--families", "plain", "--depths", "110", "--seeds", "0",
                               "--out", str(tmp_path / "p")])
    assert residual["summary"]["residual (SkipInit)"]["trains_up_to"] == 32
    assert plain["summary"]["plain"]["stops_at"] == 110
    assert residual["runs"][0]["train_error"] <= 0.1 < plain["runs"][0]["train_error"]
    saved = json.loads((tmp_path / "p" / "depth_limits.json").read_text())
    assert saved["runs"] == plain["runs"] and (tmp_path / "p" / "depth_limits.png").stat().st_size > 10_000


def test_depth_limits_is_deterministic(tmp_path):
    from resdsl.experiments import depth_limits

    argv = ["--families", "plain+bn", "--depths", "8", "--seeds", "3", "--steps", "20", "--out", str(tmp_path)]
    first, second = depth_limits.main(argv), depth_limits.main(argv)
    assert first["runs"][0]["train_error"] == second["runs"][0]["train_error"]
    assert first["runs"][0]["train_error"] < 0.9  # 20 steps move it off chance


def test_stopping_depth_and_threshold_margin():
    from resdsl.experiments.depth_limits import summary, threshold_margin

    rows = [{"family": "f", "depth": d, "seed": s, "train_error": e, "test_error": e}
            for d, errors in ((4, (0.0, 0.01, 0.5)), (8, (0.02, 0.3, 0.6)), (16, (0.0, 0.0, 0.05)))
            for s, e in enumerate(errors)]
    result = summary(rows, 0.1)
    assert result["f"]["stops_at"] == 8 and result["f"]["trains_up_to"] == 4
    assert [p["median"] for p in result["f"]["depths"]] == [0.01, 0.3, 0.0]
    assert threshold_margin(result, 0.1) == (0.01, 0.3)


@pytest.mark.slow
def test_depth_limits_quick(tmp_path):
    from resdsl.experiments import depth_limits

    result = depth_limits.main(["--quick", "--out", str(tmp_path)])
    stops = {name: fam["stops_at"] for name, fam in result["summary"].items()}
    assert stops["plain"] is not None and stops["plain"] <= 32
    assert stops["residual (SkipInit)"] is None and stops["residual+bn"] is None
