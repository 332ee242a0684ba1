"""The reference zoo: specs that reproduce published networks exactly (package data),
and the registry of their variants (:mod:`resdsl.zoo.registry`).

>>> import resdsl
>>> resdsl.zoo.entry("cifar_resnet20").params
mappingproxy({'n': 3})
>>> resdsl.zoo.load("cifar_resnet20").num_params
269722
>>> resdsl.zoo.load("resnet19")
Traceback (most recent call last):
...
resdsl.zoo.UnknownModelError: no zoo model named 'resnet19': did you mean 'resnet18'? (`resdsl zoo` lists them)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import did_you_mean
from .registry import ENTRIES, ZooEntry


class UnknownModelError(LookupError):
    """No zoo entry has that name; the message suggests the closest."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


def names() -> tuple[str, ...]:
    """Every entry's name, in registry order."""
    return tuple(e.name for e in ENTRIES)


def entry(name: str) -> ZooEntry:
    """The entry called ``name``; :class:`UnknownModelError` if there is none."""
    for candidate in ENTRIES:
        if candidate.name == name:
            return candidate
    close = did_you_mean(name, names()) if isinstance(name, str) else None
    hint = f"{close} " if close and close.startswith("did you") else ""
    raise UnknownModelError(f"no zoo model named {name!r}: {hint}(`resdsl zoo` lists them)")


def path(name: str) -> Path:
    """The spec file of the entry ``name``, inside the installed package."""
    spec = entry(name).spec
    package, *parts = spec.split("/")
    found = resources.files(package).joinpath(*parts)
    if not isinstance(found, Path):  # a zip import: no file to hand out
        raise FileNotFoundError(f"{spec} is not on disk (resdsl imported from a zip?)")
    return found


def load(name: str, **overrides: Any) -> Any:
    """``resdsl.load`` of the entry's spec with its params; ``overrides`` go on top
    (network parameters, and ``plain``, ``shortcut``, ``limits`` as ``load`` takes them)."""
    from ..api import load as load_spec

    chosen = entry(name)
    return load_spec(path(name), **{**chosen.params, **overrides})


__all__ = ["ENTRIES", "ZooEntry", "UnknownModelError", "entry", "load", "names", "path"]
