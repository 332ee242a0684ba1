"""The standard library of blocks: ``import "std/NAME"`` from any spec (package data).

Each module is one blocks-only file ``resdsl/std/NAME.res`` with a plain name
(lowercase letters, digits, ``_``). :mod:`resdsl.api` resolves the imports; this
module only says where the files are and which there are.

>>> "resnet" in modules()
True
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

#: A standard-library module name: what may follow ``std/`` in an import.
NAME = re.compile(r"[a-z0-9_]{1,64}")


def directory() -> Path | None:
    """The folder holding the modules, or None when the package is not on disk (a zip)."""
    root = resources.files(__name__)
    return root if isinstance(root, Path) else None


def modules() -> list[str]:
    """The module names, sorted."""
    folder = directory()
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir()
                  if p.suffix == ".res" and NAME.fullmatch(p.stem) and not p.is_symlink())
