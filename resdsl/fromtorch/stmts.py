"""The statements from-torch writes: a small tree, before blocks are named and printed.

Plain mutable dataclasses: structure.py builds them per module instance, blocks.py
groups instances into parameterised blocks and stages, emit.py prints them as a spec.
Argument values are literals (``int``, ``float``, ``bool``, ``str`` words, tuples) or
:class:`Expr` (a parameter, a stage's index expression).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Expr:
    """Spec source standing for a value: a block parameter (``width``), ``4 * width``."""

    text: str


@dataclass
class OpStmt:
    """``[label:] op args`` (a catalogue op)."""

    label: str | None
    op: str
    args: dict[str, Any]
    in_shape: tuple[int, ...]
    defaulted: set[str] = field(default_factory=set)  # arguments at their defaults here
    omit: set[str] = field(default_factory=set)  # arguments the spec leaves out


@dataclass
class MergeStmt:
    """``add L`` / ``mul L`` / ``concat L``."""

    op: str
    ref: str
    label: str | None = None


@dataclass
class FromStmt:
    ref: str


@dataclass
class ParamStmt:
    """``label: parameter D1, ..., init=V | std=S [, batch=true]``."""

    label: str
    dims: tuple[int, ...]
    init: float
    std: float = 0.0
    batch: bool = False


@dataclass
class SeqStmt:
    """``[label:] sequential:`` + body (children named by position)."""

    label: str | None
    body: list["Stmt"]


@dataclass
class CallStmt:
    """``[label:] block(args)``: ``instance`` until blocks.py names its block."""

    label: str | None
    instance: Any  # a blocks.Instance
    block: str = ""
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageStmt:
    """``[label:] stage block(args) x N [, options]``."""

    label: str | None
    block: str
    args: dict[str, Any]
    count: int
    options: dict[str, Any]


@dataclass
class ResidualStmt:
    """``residual [options]:`` + body [+ ``shortcut:`` path]."""

    body: list["Stmt"]
    shortcut: list["Stmt"] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrderStmt:
    names: list[str]


@dataclass
class DefaultsStmt:
    op: str
    args: dict[str, Any]


Stmt = Union[OpStmt, MergeStmt, FromStmt, ParamStmt, SeqStmt, CallStmt, StageStmt, ResidualStmt,
             OrderStmt, DefaultsStmt]


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def value_text(value: Any) -> str:
    """A literal as the language writes it: ``true``, ``1e-05``, ``3x5``, a bare word."""
    if isinstance(value, Expr):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            return text  # 1e-05: the grammar's FLOAT takes it
        return text
    if isinstance(value, (tuple, list)):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "x".join(map(str, value)) if len(value) > 1 else str(value[0])
        return "(" + ", ".join(value_text(v) for v in value) + ")"
    if isinstance(value, str):
        return value if _WORD.match(value) else f'"{value}"'
    return str(value)


def clone(stmts: list[Stmt]) -> list[Stmt]:
    """A copy of the statements (argument dicts included) to place elsewhere; a call keeps
    its instance."""
    out: list[Stmt] = []
    for stmt in stmts:
        fields = dict(vars(stmt))
        for name, value in fields.items():
            if isinstance(value, dict):
                fields[name] = dict(value)
            elif isinstance(value, set):
                fields[name] = set(value)
            elif isinstance(value, list) and name in ("body", "shortcut"):
                fields[name] = clone(value)
            elif isinstance(value, list):
                fields[name] = list(value)
        out.append(type(stmt)(**fields))
    return out


def walk(stmts: list[Stmt]):
    """Every statement, depth first (bodies and shortcut paths included)."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, (SeqStmt, ResidualStmt)):
            yield from walk(stmt.body)
        if isinstance(stmt, ResidualStmt) and stmt.shortcut:
            yield from walk(stmt.shortcut)
