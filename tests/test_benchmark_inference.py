"""benchmarks/inference.py: the CPU rows run and check their outputs, the memory probe
reports every side, and a GPU run on a machine without one is a usage error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import inference  # noqa: E402


def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as raised:
        inference.main(["--device", "cuda"])
    assert raised.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_a_row_is_checked_and_timed():
    (row,) = inference.rows([("resnet18", 1)], rounds=1, compiled=False)
    assert row["model"] == "resnet18" and row["batch"] == 1
    assert all(row[k] > 0 for k in ("ours_ms", "torchvision_ms", "ratio", "floor", "portable"))
    assert "| resnet18 | eager | 1 |" in inference.format_table([row])


@pytest.mark.slow
def test_memory_probe_reports_each_side():
    figures = inference.memory(runs=1)
    assert list(figures) == list(inference.MEMORY_SIDES)
    for side in figures.values():
        assert side["peak_rise_mib"] > 0 and side["held_mib"] > 0
    # the packed conv weights are held beside the parameters: more than the portable build
    assert figures["resdsl"]["held_mib"] > figures["portable"]["held_mib"]
