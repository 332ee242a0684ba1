"""The experiments and the torch probes, in seconds-long smoke modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import resdsl
from resdsl.cli import main

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

CIFAR = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "cifar_resnet.res"


def test_degradation_smoke(tmp_path):
    from resdsl.experiments import degradation

    result = degradation.main(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "science_degradation.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "science_degradation.json").read_text())
    assert saved["summary"] == result["summary"]
    assert {(row["depth"], row["plain"]) for row in result["summary"]} == {(8, True), (8, False)}
    for row in result["summary"]:
        assert 0.0 <= row["train_error"]["min"] <= row["train_error"]["max"] <= 1.0


def test_dropping_smoke(tmp_path):
    from resdsl.experiments import dropping

    result = dropping.main(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "science_dropping.png").stat().st_size > 10_000
    assert result["units"] == ["layer1.0", "layer2.0", "layer3.0"]
    assert result["shape_keeping"] == [0]  # the plain twin's downsampling blocks cannot go
    residual, plain = result["residual"][0], result["plain"][0]
    assert len(residual["each"]) == 3 and all(a is not None for a in residual["each"])
    assert plain["each"][1] is None and plain["each"][2] is None
    assert residual["random"][0] == residual["baseline"]


def test_training_is_reproducible():
    from resdsl.experiments.training import digits, train

    data = digits(limit=64)
    first, second = (train(1, False, 3, data, steps=3, batch=16, eval_every=1) for _ in range(2))
    assert first.train_error == second.train_error
    assert len(data.y_train) == 64 and data.x_train.shape[1:] == (3, 8, 8)


def test_plain_init_ratio_and_gradients():
    from resdsl.analysis.probes import init_ratios, stage_gradients

    net = resdsl.load(CIFAR, n=1, size=8, plain=True)
    ratios = init_ratios(net, zero_init_residual=True)  # nothing to zero in a plain twin
    assert [r.shortcut for r in ratios] == ["none"]  # the two downsampling blocks change shape
    assert ratios[0].ratio > 0.1
    norms = dict(stage_gradients(net))
    assert set(norms) == {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"}
    assert all(v > 0 for v in norms.values())


def test_cli_init_and_gradients(capsys):
    argv = ["analyze", str(CIFAR), "-D", "size=8", "--init", "--gradients", "--sweep", "n=1,2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["init"]) == 9 and all(r["ratio_zero_init"] == 0.0 for r in result["init"])
    assert [(g["setting"], g["plain"]) for g in result["gradients"]] == [
        ("n=1", False), ("n=1", True), ("n=2", False), ("n=2", True)]
    assert [g["depth"] for g in result["gradients"]] == [8, 8, 14, 14]


def test_cli_gradients_text(capsys):
    assert main(["analyze", str(CIFAR), "-D", "n=1", "-D", "size=8", "--gradients", "--eval-mode"]) == 0
    out = capsys.readouterr().out
    assert "running statistics" in out and "plain" in out and "residual" in out
