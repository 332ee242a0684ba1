"""The resdsl command: output, exit codes, overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resdsl.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_check_prints_one_line(capsys):
    assert main(["check", "resdsl/zoo/resnet50.res"]) == 0
    out = capsys.readouterr().out
    assert out == "resnet50: ok - 175 ops (54 weight layers), 25,557,032 parameters, [3, 224, 224] -> [1000]\n"


def test_check_overrides_and_plain(capsys):
    assert main(["check", "resdsl/zoo/unet.res", "-D", "pad=1", "-D", "size=512"]) == 0
    assert "[1, 512, 512] -> [2, 512, 512]" in capsys.readouterr().out
    assert main(["check", "resdsl/zoo/resnet50.res", "--plain"]) == 0
    assert "22,780,456 parameters" in capsys.readouterr().out


def test_check_json(capsys):
    assert main(["check", "resdsl/zoo/resnet50.res", "--json", "-D", "num_classes=10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output_shape"] == [10] and result["params"] == {"num_classes": 10}
    assert [row["name"] for row in result["summary"]][:2] == ["conv1", "bn1"]


def test_compile_prints_a_table_grouped_by_stage(capsys):
    assert main(["compile", "resdsl/zoo/resnet50.res", "-D", "num_classes=10"]) == 0
    out = capsys.readouterr().out
    assert "layer3     bottleneck x 6    [1024, 14, 14]     7,098,368" in out
    assert "total" in out and "23,528,522" in out and "shapes match" in out


def test_spec_errors_exit_1_on_stderr(capsys):
    assert main(["check", "tests/golden/errors/unknown_op.res"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown_op.res:3:12: error:" in captured.err


def test_spec_errors_as_json(capsys):
    assert main(["check", "tests/golden/errors/unknown_op.res", "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert (errors[0]["line"], errors[0]["column"]) == (3, 12) and errors[0]["hint"] == "did you mean 'conv'?"


@pytest.mark.parametrize("argv", [[], ["check"], ["check", "missing.res"], ["nope", "x.res"],
                                  ["check", "resdsl/zoo/unet.res", "-D", "pad"], ["compile", "resdsl/zoo/unet.res", "--batch", "0"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_console_script_runs_as_a_process():
    result = subprocess.run([sys.executable, "-m", "resdsl", "check", "resdsl/zoo/unet.res"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0 and result.stdout.startswith("unet: ok")
