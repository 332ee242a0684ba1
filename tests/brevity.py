"""Counting lines the same way for every family (issue 14 item 5, docs/zoo.md "Brevity").

A spec counts its non-blank, non-comment lines and those of every file it imports
(each once: a std module two specs share is counted in each). Python counts the
non-blank, non-comment lines of the named top-level classes and functions of a
module, without docstrings and decorators: the code that defines the architecture,
not its weights enums, documentation or registration.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import resdsl

PACKAGE = Path(resdsl.__file__).resolve().parent


def spec_lines(path: Path) -> int:
    """Non-blank, non-comment lines of a spec and of the files it imports, once each."""
    seen: set[Path] = set()

    def count(file: Path) -> int:
        if file in seen:
            return 0
        seen.add(file)
        text = file.read_text()
        total = sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))
        for target in re.findall(r'^import "([^"]+)"', text, re.M):
            base = PACKAGE if target.startswith("std/") else file.parent
            total += count(base / (target if target.endswith(".res") else f"{target}.res"))
        return total

    return count(path)


def python_lines(module_name: str, names: list[str]) -> int:
    """Non-blank, non-comment, non-docstring, non-decorator lines of the named top-level
    definitions (classes, functions, and tables such as VGG's ``cfgs``) of ``module_name``."""
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    lines = source.splitlines()
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for decorator in node.decorator_list:
                skipped |= set(range(decorator.lineno, decorator.end_lineno + 1))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skipped |= set(range(body[0].lineno, body[0].end_lineno + 1))
    found = {_name(node): node for node in tree.body if _name(node) in names}
    missing = set(names) - set(found)
    assert not missing, f"{module_name} has no {sorted(missing)}"
    return sum(1 for node in found.values() for n in range(node.lineno, node.end_lineno + 1)
               if n not in skipped and lines[n - 1].strip() and not lines[n - 1].strip().startswith("#"))


def _name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        return getattr(target, "id", None)
    return None
