"""Statements -> spec text: the network, its blocks (children first), four-space indents."""

from __future__ import annotations

from typing import Any

from ..ops import REGISTRY
from ..shapes import format_shape
from .blocks import Block
from .stmts import (
    CallStmt, DefaultsStmt, Expr, FromStmt, value_text, MergeStmt, OpStmt, OrderStmt, ParamStmt, ResidualStmt,
    SeqStmt, StageStmt, Stmt,
)

class Writer:
    def __init__(self, defaults: dict[str, dict[str, Any]]):
        self.subst: dict[tuple[int, Any], Expr] = {}
        self.defaults = defaults  # block -> parameter -> default: calls leave those out
        self.lines: list[str] = []

    def value(self, box: Any, key: Any, value: Any) -> str:
        found = self.subst.get((id(box), key))
        if found is not None:
            return found.text
        if isinstance(value, (tuple, list)) and isinstance(box, list) is False and key == "dims":
            return ", ".join(value_text(v) for v in value)
        return value_text(value)

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def stmts(self, stmts: list[Stmt], depth: int) -> None:
        for stmt in stmts:
            self.stmt(stmt, depth)

    def stmt(self, stmt: Stmt, depth: int) -> None:
        label = f"{stmt.label}: " if getattr(stmt, "label", None) else ""
        if isinstance(stmt, OpStmt):
            self.line(depth, label + self.op(stmt))
        elif isinstance(stmt, MergeStmt):
            self.line(depth, f"{label}{stmt.op} {stmt.ref}")
        elif isinstance(stmt, FromStmt):
            self.line(depth, f"from {stmt.ref}")
        elif isinstance(stmt, ParamStmt):
            dims = ", ".join(self.value(stmt.dims, k, d) for k, d in enumerate(stmt.dims))
            text = f"{stmt.label}: parameter {dims}"
            init = self.value(stmt, "init", stmt.init)
            if stmt.std:
                text += f", std={value_text(stmt.std)}" + (f", init={init}" if stmt.init else "")
            elif init not in ("0", "0.0"):
                text += f", init={init}"
            if stmt.batch:
                text += ", batch=true"
            self.line(depth, text)
        elif isinstance(stmt, SeqStmt):
            self.line(depth, f"{label}sequential:")
            self.stmts(stmt.body, depth + 1)
        elif isinstance(stmt, CallStmt):
            self.line(depth, label + self.call(stmt.block, stmt.args))
        elif isinstance(stmt, StageStmt):
            options = "".join(f", {k}={self.value(stmt.options, k, v)}" for k, v in stmt.options.items())
            self.line(depth, f"{label}stage {self.call(stmt.block, stmt.args)} x {stmt.count}{options}")
        elif isinstance(stmt, ResidualStmt):
            options = ", ".join(f"{k}={self.value(stmt.options, k, v)}" for k, v in stmt.options.items())
            self.line(depth, "residual" + (f" {options}" if options else "") + ":")
            self.stmts(stmt.body, depth + 1)
            if stmt.shortcut is not None:
                self.line(depth, "shortcut:")
                self.stmts(stmt.shortcut, depth + 1)
        elif isinstance(stmt, OrderStmt):
            self.line(depth, "order " + ", ".join(stmt.names))
        elif isinstance(stmt, DefaultsStmt):
            args = ", ".join(f"{k}={value_text(v)}" for k, v in stmt.args.items())
            self.line(depth, f"defaults {stmt.op}({args})")
        else:  # pragma: no cover - every statement kind is written above
            raise TypeError(f"no writer for {type(stmt).__name__}")

    def op(self, stmt: OpStmt) -> str:
        spec = REGISTRY[stmt.op]
        parts = []
        for arg in spec.positional:
            if arg.name not in stmt.args:
                break
            if arg.variadic:
                parts.extend(value_text(v) for v in stmt.args[arg.name])
            else:
                parts.append(self.value(stmt.args, arg.name, stmt.args[arg.name]))
        positional = {a.name for a in spec.positional}
        order = [a.name for a in spec.keywords]  # keywords in the order the op declares them
        keywords = sorted((k for k in stmt.args if k not in positional and k not in stmt.omit),
                          key=lambda k: order.index(k) if k in order else len(order))
        parts += [f"{k}={self.value(stmt.args, k, stmt.args[k])}" for k in keywords]
        return stmt.op + (" " + ", ".join(parts) if parts else "")

    def call(self, block: str, args: dict[str, Any]) -> str:
        defaults = self.defaults.get(block, {})
        given = [(k, self.value(args, k, v)) for k, v in args.items()]
        given = [(k, text) for k, text in given if k not in defaults or text != value_text(defaults[k])]
        if not given:
            return block
        # positional while the parameters come in order, then keywords
        order = list(defaults)
        parts, positional = [], True
        for k, text in given:
            positional = positional and len(parts) < len(order) and order[len(parts)] == k
            parts.append(text if positional else f"{k}={text}")
        return f"{block}(" + ", ".join(parts) + ")"


def write_spec(name: str, input_shape: tuple[int, ...], blocks: list[Block], body: list[Stmt],
               header: list[str], prelude: list[Stmt] = ()) -> str:
    """The whole spec: a header comment, the network, its blocks, its statements."""
    writer = Writer({b.name: {p: d for p, _, d in b.params} for b in blocks})
    writer.lines.extend(f"# {line}" if line else "#" for line in header)
    writer.line(0, f"network {name}:")
    writer.stmts(list(prelude), 1)
    writer.line(1, f"input x: {format_shape(input_shape)}")
    for block in blocks:
        writer.lines.append("")
        params = ", ".join(f"{p}: {kind} = {value_text(default)}" for p, kind, default in block.params)
        writer.line(1, f"block {block.name}" + (f"({params})" if params else "") + ":")
        writer.subst = block.subst
        for name, expr in block.lets:
            writer.line(2, f"let {name} = {expr}")
        writer.stmts(block.body, 2)
        writer.subst = {}
    writer.lines.append("")
    writer.stmts(body, 1)
    return "\n".join(writer.lines) + "\n"
