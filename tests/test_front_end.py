"""The front end stays torch-free and fast; the grammar ships with the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import resdsl
from resdsl.syntax.grammar import grammar_path
from resdsl.syntax.text import MODULE_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]


def test_load_never_imports_torch():
    code = (
        "import sys, resdsl\n"
        "net = resdsl.load('specs/resnet50.res', num_classes=10)\n"
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


def test_grammar_file_is_found_and_packaged():
    assert grammar_path().name == "resdsl.lark"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"resdsl.grammars" = "grammars"' in pyproject and '"*.lark"' in pyproject


def test_parser_is_built_once_per_process():
    from resdsl.syntax.grammar import get_parser

    assert get_parser() is get_parser()
    resdsl.loads("network n:\n    input x: [2]\n    relu\n")
    assert get_parser.cache_info().currsize == 1
