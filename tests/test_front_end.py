"""The front end stays torch-free and fast; the grammar ships with the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import resdsl
from resdsl.syntax.grammar import grammar_text
from resdsl.vocab import MODULE_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]


def test_load_never_imports_torch():
    code = (
        "import sys, resdsl\n"
        "net = resdsl.load('resdsl/zoo/resnet50.res', num_classes=10)\n"
        "resdsl.load('tests/language/resnet18.yaml')\n"
        "assert net.output_shape == (10,)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_reserved_names_cover_every_nn_module_attribute():
    import torch

    public = {name for name in dir(torch.nn.Module) if not name.startswith("_")}
    assert public <= MODULE_ATTRIBUTES | {"T_destination"}, sorted(public - MODULE_ATTRIBUTES)


def test_grammar_lives_in_the_package():
    """One place, read through importlib.resources; no second search path to drift."""
    assert grammar_text().startswith("// The resdsl grammar")
    assert (ROOT / "resdsl" / "syntax" / "resdsl.lark").is_file()
    assert not (ROOT / "grammars").exists()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"resdsl.syntax" = ["*.lark"]' in pyproject and "package-dir" not in pyproject


@pytest.mark.slow
def test_installed_wheel_checks_a_spec(tmp_path):
    """Build a wheel from the tracked sources, install it in a fresh environment and run
    ``resdsl check`` away from the source tree: the grammar and every subpackage ship."""
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "pyproject.toml", "README.md", "resdsl"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    wheels, env = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
                   check=True, timeout=600)
    # the dependencies (lark, pydantic, ...) come from this interpreter's site-packages
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True, timeout=600)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "-q", "install", "--no-deps", "--no-index",
                    *map(str, wheels.glob("*.whl"))], check=True, timeout=600)
    spec = tmp_path / "spec.res"
    spec.write_text("network n:\n    input x: [3, 8, 8]\n    c: conv 3x3, 4\n")
    where = tmp_path / "elsewhere"
    where.mkdir()
    env_vars = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    located = subprocess.run([str(python), "-c", "import resdsl; print(resdsl.__file__)"], cwd=where,
                             capture_output=True, text=True, env=env_vars, timeout=600)
    assert Path(located.stdout.strip()).is_relative_to(env), located.stdout + located.stderr
    result = subprocess.run([str(env / "bin" / "resdsl"), "check", str(spec)], cwd=where,
                            capture_output=True, text=True, env=env_vars, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "n: ok - 1 ops" in result.stdout


def test_parser_is_built_once_per_process():
    from resdsl.syntax.grammar import get_parser

    assert get_parser() is get_parser()
    resdsl.loads("network n:\n    input x: [2]\n    relu\n")
    assert get_parser.cache_info().currsize == 1
