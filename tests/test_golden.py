"""Golden tests: each spec in tests/golden/ is run through the CLI and its whole output
(exit code, stdout, stderr) compared with NAME.expected.

A spec's NAME.args holds extra CLI arguments (the first word may be a command;
the default command is ``check``). Regenerate after an intended change with
``RESDSL_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from resdsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
COMMANDS = ("check", "compile")
SPECS = sorted(p for p in GOLDEN.rglob("*") if p.suffix in (".res", ".yaml"))


def run_cli(spec: Path, capsys) -> str:
    args_file = spec.with_suffix(".args")
    extra = shlex.split(args_file.read_text()) if args_file.exists() else []
    command = extra.pop(0) if extra and extra[0] in COMMANDS else "check"
    code = main([command, str(spec.relative_to(ROOT)), *extra])
    captured = capsys.readouterr()
    return f"exit: {code}\n--- stdout\n{captured.out}--- stderr\n{captured.err}"


@pytest.mark.parametrize("spec", SPECS, ids=[str(p.relative_to(GOLDEN)) for p in SPECS])
def test_golden(spec: Path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    actual = run_cli(spec, capsys)
    expected_file = spec.with_suffix(".expected")
    if os.environ.get("RESDSL_UPDATE_GOLDEN"):
        expected_file.write_text(actual)
    # A missing expected file is a failure, never a silent pass: write it with
    # RESDSL_UPDATE_GOLDEN=1 and review it like any other change.
    assert expected_file.exists(), f"{expected_file.relative_to(ROOT)} is missing; see the module docstring"
    assert actual == expected_file.read_text()


def test_error_specs_fail_and_ok_specs_pass(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for spec in SPECS:
        first_line = spec.with_suffix(".expected").read_text().splitlines()[0]
        wanted = "exit: 0" if spec.parent.name == "ok" else "exit: 1"
        assert first_line == wanted, spec.name


def test_enough_bad_and_good_specs():
    folders = [p.parent.name for p in SPECS]
    assert folders.count("errors") >= 15
    assert folders.count("ok") >= 3
    assert set(folders) == {"errors", "ok"}, "golden specs live in errors/ or ok/"
