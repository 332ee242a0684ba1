"""The zoo and the standard library ship in the wheel (issue 14, item 2): a wheel built
from this tree, installed into a fresh venv, works outside the repository.

Nothing is downloaded: the wheel is built without build isolation and installed
without dependencies or an index into a venv that sees this Python's packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import resdsl

REPO = Path(__file__).resolve().parents[1]

def _run(*argv: str | Path, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1")
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the venv's bin folder, the wheel, a work folder outside the repository), the wheel
    installed (about 10 s: a build, a venv, an install)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building in the tree would leave build/ and egg-info there
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "resdsl", source / "resdsl",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = root / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", dist, source, cwd=root)
    wheel = next(dist.glob("resdsl-*.whl"))
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=root)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    # the venv has no pip of its own: this Python's pip (seen through the system site) installs into it
    _run(bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=root)
    work = root / "work"
    work.mkdir()
    return bin_dir, wheel, work


def test_the_wheel_carries_the_zoo_and_the_standard_library(installed):
    _, wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "resdsl"
    for pattern in ("zoo/*.res", "zoo/yaml/*.yaml", "std/*.res", "syntax/*.lark"):
        expected = {f"resdsl/{p.relative_to(package).as_posix()}" for p in package.glob(pattern)}
        assert expected and expected <= names, pattern


def test_the_installed_package_is_the_wheels(installed):
    bin_dir, _, work = installed
    where = _run(bin_dir / "python", "-c", "import resdsl; print(resdsl.__file__)", cwd=work).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent) and not Path(where).is_relative_to(REPO)


def test_zoo_and_compile_by_name_outside_the_repository(installed):
    bin_dir, _, work = installed
    assert not work.resolve().is_relative_to(REPO)
    listed = json.loads(_run(bin_dir / "resdsl", "zoo", "--json", cwd=work).stdout)
    assert [item["name"] for item in listed] == list(resdsl.zoo.names())
    table = _run(bin_dir / "resdsl", "zoo", cwd=work).stdout
    assert all(name in table for name in resdsl.zoo.names())
    models = ["resnet18"] + [n for n in ("efficientnet_b0",) if n in resdsl.zoo.names()]
    for name in models:
        out = json.loads(_run(bin_dir / "resdsl", "compile", name, "--json", cwd=work).stdout)
        assert out["shapes_match"] and out["torch_params"] == resdsl.zoo.load(name).num_params


def test_std_import_from_a_spec_outside_the_repository(installed):
    bin_dir, _, work = installed
    spec = work / "mine.res"
    spec.write_text('import "std/resnet"\n\nnetwork mine:\n    input x: [3, 32]\n'
                    '    layer1: stage basic(3) x 2\n    layer2: stage bottleneck(8, 32) x 1, stride=2\n')
    out = json.loads(_run(bin_dir / "resdsl", "check", spec, "--json", cwd=work).stdout)
    assert out["output_shape"] == [32, 16]
    assert out["num_params"] == resdsl.load(spec).num_params
