"""The package layout the architecture map describes: one home per shape helper,
passes/ holds only passes, analysis has its own package."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import resdsl
from resdsl import passes
from resdsl.shapes import format_dims, format_shape

PACKAGE = Path(resdsl.__file__).resolve().parent


def _sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def test_shape_helpers_have_one_home():
    found = {name: [path for path, text in _sources().items() if re.search(pattern, text, re.M)]
             for name, pattern in {
                 "Shape": r"^Shape\s*=",
                 "format_shape": r"^def format_shape\b",
                 "format_dims": r"^def format_dims\b",
                 # (the receptive field's text caps huge values: "x".join(str(d) if d < RF_CAP ...)
                 "a shape written by hand": r'"x"\.join\(str\(\w+\) for|", "\.join\((str|map\(str)',
             }.items()}
    assert found == {"Shape": ["shapes.py"], "format_shape": ["shapes.py"], "format_dims": ["shapes.py"],
                     "a shape written by hand": ["shapes.py"]}


def test_the_two_spellings():
    assert format_shape((3, 32, 32)) == "[3, 32, 32]" and format_shape(()) == "[]"
    assert format_shape(None) == "?"
    assert format_dims((3, 3)) == "3x3" and format_dims(None) == ""


def test_passes_holds_only_passes():
    """Every module under resdsl/passes/ contributes a pass to the pipeline and defines
    no class (a report's types live in resdsl.analysis)."""
    modules = [m.name for m in pkgutil.iter_modules(passes.__path__)]
    assert modules, "resdsl.passes has no module"
    for name in modules:
        module = importlib.import_module(f"resdsl.passes.{name}")
        own = [f for f in vars(module).values() if getattr(f, "__module__", None) == module.__name__]
        assert any(f in passes.PIPELINE for f in own), f"resdsl/passes/{name}.py adds no pass"
        assert not [c for c in own if isinstance(c, type)], f"resdsl/passes/{name}.py defines a class"


def test_analysis_and_probes_have_their_own_package():
    assert not (PACKAGE / "passes" / "analysis.py").exists()
    assert not (PACKAGE / "experiments" / "probes.py").exists()
    assert {m.name for m in pkgutil.iter_modules([str(PACKAGE / "analysis")])} == {"paths", "probes", "report"}


def test_every_module_imports():
    """A moved module leaves no import of its old path behind."""
    names = [m.name for m in pkgutil.walk_packages(resdsl.__path__, "resdsl.") if m.name != "resdsl.__main__"]
    assert len(names) > 30
    for name in names:
        importlib.import_module(name)
