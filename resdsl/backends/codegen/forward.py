"""``forward`` bodies: straight-line code, fx-style.

One statement per op; a name is reused for the next value when its old value is
dead, a long-lived value (a U-Net skip) is ``del``eted after its last use when more
allocating work follows, and an op the catalogue marks ``in_place`` overwrites its
input when that input is dead and was made fresh (``fresh_output``) in the same
``forward``. Merges are inline expressions from their catalogue entry's
``merge_code``. A mixin of :class:`~.generator.Generator`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ...graph import Container, op_node
from ...ops import REGISTRY
from .context import MergeWriter
from .text import INDENT, LINE_LENGTH, pyname

_AUGMENTED = ("+", "*")  # ``a OP b`` written ``a OP= b`` when the op may run in place


@dataclass
class Op:
    """One forward statement before names are chosen."""

    node: int
    inputs: tuple[int, ...]
    span: Any  # where in the spec (file and line) the statement comes from
    rhs: Callable[[list[str]], str]
    kind: str = "expr"  # module | child | merge
    local: str | None = None
    in_place: bool = False  # the catalogue's in_place: a module built with inplace=True, or a += b
    augmented: str | None = None  # OP of a merge written ``a OP b``, that may run as ``a OP= b``
    optional: str | None = None  # the flag of an optional shortcut submodule (torchvision's downsample)


class ForwardWriter:
    """Writes ``forward`` (see :class:`~.generator.Generator`)."""

    def merge_op(self, node: int, optional: str | None = None, inputs: tuple | None = None,
                 attributes: dict | None = None) -> Op:
        data = op_node(self.graph, node)
        spec = REGISTRY[data.op]
        inputs = tuple(inputs or data.inputs)
        augmented = None
        if spec.in_place and len(inputs) == 2:  # ``a + b`` may be written ``a += b``
            probe = spec.merge_code(MergeWriter(self, node, ["a", "b"]))
            augmented = next((o for o in _AUGMENTED if probe == f"a {o} b"), None)
        return Op(node, inputs, data.span,
                  lambda names: spec.written_inline(MergeWriter(self, node, names, attributes)),
                  kind="merge", in_place=spec.in_place, augmented=augmented, optional=optional)

    def call_expr(self, node: int, local: str, names: list[str]) -> str:
        """A module called its own way: its catalogue entry's ``call`` (attention's
        ``self.attn(x, x, x, need_weights=False)[0]``)."""
        writer = MergeWriter(self, node, names)
        writer.module = f"self.{local}"
        return REGISTRY[op_node(self.graph, node).op].call(writer)

    def forward(self, path: str, ops: list[Op], box: Container) -> tuple[list[str], set[str]]:
        """Straight-line code; a name is reused or deleted as soon as its value is dead.
        Returns the lines and the modules that run in place."""
        last: dict[int, int] = {}
        for index, op in enumerate(ops):
            for n in op.inputs:
                last[n] = index
        last[box.output] = len(ops)
        in_name = "x"
        if box.kind == "network":
            label = op_node(self.graph, box.input).label
            in_name = pyname(label) if label and label.isidentifier() else "x"
        var: dict[int, str] = {box.input: in_name}
        live: set[str] = {in_name}
        lines: list[str] = []
        inplace: set[str] = set()
        inner = INDENT * 2
        for index, op in enumerate(ops):
            if op.node in var:  # a container that hands back its input: nothing to run
                continue
            ins = [var[n] for n in op.inputs]
            dead = [n for n in dict.fromkeys(op.inputs) if last.get(n) == index]
            mutable = {n for n in dead if n != box.input and op.inputs.count(n) == 1 and
                       REGISTRY[op_node(self.graph, n).op].fresh_output}
            comment = f"  # {self.where(op.span)}"
            temporaries: set[str] = set()
            if op.optional is not None:  # torchvision's optional downsample
                ident = self._fresh("identity", live)
                lines += [f"{inner}{ident} = {ins[1]}{comment}",
                          f"{inner}if self.{op.optional} is not None:",
                          f"{inner}{INDENT}{ident} = self.{op.optional}({ins[1]}){comment}"]
                ins[1] = ident
                temporaries.add(ident)
            label = op.local if op.local and not re.fullmatch(r"\d+|.*_\d+", op.local) else None
            if op.augmented is not None and op.inputs[0] in mutable:
                target = var[op.inputs[0]]
                lines.append(f"{inner}{target} {op.augmented}= {ins[1]}{comment}")
            else:
                if label and label.isidentifier() and last.get(op.node, -1) > index + 1:
                    target = self._fresh(pyname(label), live - {var[n] for n in dead})
                elif dead:
                    target = var[dead[0]]
                else:
                    target = self._fresh("identity" if op_node(self.graph, op.node).shortcut else "out", live)
                if op.kind == "module" and op.in_place and op.inputs[0] in mutable and \
                        var[op.inputs[0]] == target:
                    inplace.add(op.local)
                lines += _assignment(inner, target, op.rhs(ins), comment)
            var[op.node] = target
            freed = ({var[n] for n in dead} | temporaries) - {target}
            live = (live - freed) | {target}
            freed.discard(in_name)
            if freed and self._allocates_later(ops, index):
                lines.append(f"{inner}del {', '.join(sorted(freed))}")
        lines.append(f"{inner}return {var[box.output]}")
        return [f"{INDENT}def forward(self, {in_name}: torch.Tensor) -> torch.Tensor:"] + lines, inplace

    @staticmethod
    def _fresh(base: str, live: set[str]) -> str:
        name, index = base, 1
        while name in live:
            name = f"{base}_{index}"
            index += 1
        return name

    def _allocates_later(self, ops: list[Op], index: int) -> bool:
        for op in ops[index + 1:]:
            if op.in_place and (op.kind == "module" or op.augmented is not None):
                continue  # runs in place: allocates nothing
            return True
        return False


def _assignment(indent: str, target: str, rhs: str, comment: str) -> list[str]:
    """``target = rhs  # where``, split as black splits a line that is too long: an
    expression with a top-level operator is wrapped in parentheses, a call is split at
    its last bracket pair (``out = self.expand3x3_activation(\n    squeeze\n)  # ...``)."""
    line = f"{indent}{target} = {rhs}{comment}"
    if len(line) <= LINE_LENGTH:
        return [line]
    depth, operator, opening = 0, False, None
    for index, char in enumerate(rhs):
        if char in "([":
            if depth == 0:
                opening = index
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0 and char == " ":
            operator = True  # ``a + b``: black wraps the whole expression
    if operator or opening is None or rhs[-1] not in ")]":
        return [f"{indent}{target} = (", f"{indent}{INDENT}{rhs}", f"{indent}){comment}"]
    return [f"{indent}{target} = {rhs[:opening + 1]}", f"{indent}{INDENT}{rhs[opening + 1:-1]}",
            f"{indent}{rhs[-1]}{comment}"]
