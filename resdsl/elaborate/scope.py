"""What elaboration carries while it walks a body: tensors, scopes and their labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .. import ir
from ..errors import Problem, Span, did_you_mean
from ..expr import Value, describe
from ..shapes import Shape


@dataclass
class Tensor:
    node: int
    shape: Shape | None  # None after an error upstream: checks that need it are skipped
    origin: Span


@dataclass
class Scope:
    """A namespace for labels and submodule names: the network, a block instance,
    a labelled residual, or a shortcut path."""

    path: str  # module path prefix ("" at the root)
    container: str
    env: dict[str, Value]
    labels: dict[str, Tensor]
    reserved: set[str]
    used: dict[str, Span] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    sequential: bool = False  # shortcut paths and sequential bodies name their children 0, 1, 2
    position: int = 0
    depth: int = 0
    notes: tuple[Any, ...] = ()  # str or _CallNote, formatted only when a problem is reported
    block_stack: tuple[str, ...] = ()
    order: tuple | None = None  # (the ``order`` statement, its names), checked when the body ends
    lets: dict[str, Value] | None = None  # this scope's ``let`` names: one layer over ``env``

    def module_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def shape_of(self, name: str, expr: Any) -> Shape | None:
        """The shape of the tensor labelled ``name`` here (``channels(name)``, ``dim(name, k)``)."""
        tensor = self.labels.get(name)
        if tensor is None:
            known = sorted(self.labels)
            raise Problem(expr.span, f"no tensor labelled '{name}' in this scope",
                          hint=did_you_mean(name, known) or "label an earlier statement, or use 'input'")
        return tensor.shape


class _CallNote:
    """"in PATH = BLOCK(ARGS), used at FILE:LINE:COL", built only if a problem needs it
    (formatting it for every block instance cost more than the instance itself)."""

    __slots__ = ("path", "name", "bound", "span")

    def __init__(self, path: str, name: str, bound: Mapping[str, Value], span: Span):
        self.path, self.name, self.bound, self.span = path, name, bound, span

    def __str__(self) -> str:
        call = f"{self.name}({', '.join(describe(v) for v in self.bound.values())})"
        return f"in {self.path} = {call}, used at {self.span.where()}"


def _declared_labels(stmts: Iterable[ir.Stmt]) -> set[str]:
    """Labels in a namespace: its own statements and those of unlabelled residual
    bodies and of both branches of an ``if`` (neither adds a level)."""
    labels: set[str] = set()
    for stmt in stmts:
        if getattr(stmt, "label", None):
            labels.add(stmt.label)
        if isinstance(stmt, ir.Residual) and stmt.label is None:
            labels |= _declared_labels(stmt.body)
        if isinstance(stmt, (ir.If, ir.Repeat)):
            for body in ir.bodies(stmt):
                labels |= _declared_labels(body)
    return labels
