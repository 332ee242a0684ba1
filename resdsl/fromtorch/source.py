"""``resdsl from-torch DOTTED.CALLABLE``: import the callable, call it with ``-D`` arguments.

The one module of resdsl that imports modules by name (a test checks): the callable a
user names, and the classes and functions the op catalogue names for recognition.
"""

from __future__ import annotations

import ast
import importlib
import re
from typing import Any

from ..errors import UsageError

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")


def resolve(dotted: str) -> Any:
    """``torchvision.models.convnext.LayerNorm2d`` (a name the catalogue declares) -> the
    object, or None when its package is not installed."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, attribute, None)


def _literal(text: str) -> Any:
    """A ``-D`` value: a Python literal (``10``, ``0.5``, ``True``, ``(1, 2)``), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def make_module(dotted: str, defines: dict[str, str]) -> tuple[Any, str]:
    """Import ``package.module.callable`` and call it; returns (module, the callable's name).

    Only a dotted name is accepted (no paths, no expressions); the callable runs with the
    user's rights, as ``python -c`` would: from-torch is for code the user trusts.
    """
    if not _DOTTED.match(dotted) or len(dotted) > 300:
        raise UsageError(f"expected a dotted name such as torchvision.models.resnet50, got {dotted!r}")
    from torch import nn

    module_name, _, attribute = dotted.rpartition(".")
    target = None
    parts = module_name.split(".")
    # the longest importable prefix, then attributes (torchvision.models.video.r3d_18)
    prefixes = {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError as exc:
            if getattr(exc, "name", None) in prefixes:
                continue  # that prefix is no module: a shorter one with attributes may be
            raise UsageError(f"{dotted}: importing {'.'.join(parts[:cut])} failed: {_first_line(exc)}") from None
        except Exception as exc:  # the user's module fails as it is imported: their error, not ours
            raise UsageError(f"{dotted}: importing {'.'.join(parts[:cut])} failed: {_first_line(exc)}") from None
        try:
            for part in parts[cut:] + [attribute]:
                target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{dotted}: no attribute {part!r} in {'.'.join(parts[:cut])}") from None
        break
    else:
        raise UsageError(f"{dotted}: cannot import {parts[0]!r}")
    if not callable(target):
        raise UsageError(f"{dotted} is not callable")
    kwargs = {key: _literal(value) for key, value in defines.items()}
    try:
        module = target(**kwargs)
    except Exception as exc:  # the user's callable failed (bad -D values): located by the call
        called = ", ".join(f"{k}={_short(repr(v))}" for k, v in kwargs.items())
        raise UsageError(f"{dotted}({called}) raised {_first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"{dotted}() returned {type(module).__name__}, not a torch.nn.Module")
    return module, attribute


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _short(f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "))


def _short(text: str, limit: int = 200) -> str:
    """A -D value or an exception's text, cut: a 100 kB argument is no message."""
    return text if len(text) <= limit else text[:limit] + "..."
