"""Long skips: add, mul, concat and from, which refer to an earlier tensor by label."""

from __future__ import annotations

from typing import Any

from .. import ir
from ..errors import Problem
from ..expr import describe, evaluate
from ..ops import OpError
from ..ops.merge import merge_shape
from ..shapes import format_shape
from .scope import Scope, Tensor


class RefsMixin:
    """Long skips: add, mul, concat and from, which refer to an earlier tensor by label."""

    # ---- long skips ------------------------------------------------------------------
    def ref(self, stmt: ir.Ref, scope: Scope, x: Tensor) -> Tensor:
        target = scope.labels.get(stmt.target)
        if target is None:
            # Labels in definition order, as LANGUAGE.md section 9 shows them; the input
            # is always reachable as 'input', so it is not listed.
            inputs = {n for n, t in scope.labels.items() if t.node == scope.labels["input"].node}
            visible = [name for name in scope.labels if name not in inputs]
            hint = "labels in scope: " + ", ".join(visible) if visible else \
                "no statement in this scope is labelled yet; 'input' names the input tensor"
            raise Problem(stmt.target_span,
                          f"{stmt.kind} '{stmt.target}': no tensor labelled '{stmt.target}' in this scope",
                          hint=hint)
        if stmt.kind == "from":
            for option in stmt.options:
                raise Problem(option.span, "'from' takes no options", hint="write 'from LABEL'")
            self.set_label(scope, stmt.label, target, stmt.span)
            return target
        args: dict[str, Any] = {}
        for option in stmt.options:
            value = evaluate(option.value, scope.env)
            if stmt.kind == "concat" and option.name == "crop":
                if value != "center":
                    raise Problem(option.span, f"crop must be 'center', not {describe(value)}",
                                  hint="write 'concat LABEL, crop=center'")
                args["crop"] = "center"
            else:
                raise Problem(option.span, f"{stmt.kind} has no option '{option.name or describe(value)}'",
                              hint="concat LABEL [, crop=center]; add LABEL; mul LABEL")
        if stmt.kind == "concat":
            args.setdefault("crop", None)
        shape = None
        if x.shape is not None and target.shape is not None:
            try:
                shape = merge_shape(stmt.kind, [x.shape, target.shape], args)
            except OpError:
                raise self.mismatch(stmt, x, target) from None
            shape = self.checked_size(shape, stmt.span)
        name = self.module_name(scope, stmt.label, stmt.kind, stmt.span)
        out = self.add_node(stmt.kind, args, [x, target], ["data", f"long-{stmt.kind}"], shape, scope,
                            stmt, module=scope.module_path(name), label=stmt.label)
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def mismatch(self, stmt: ir.Ref, x: Tensor, target: Tensor) -> Problem:
        notes = (f"the current tensor {format_shape(x.shape)} comes from line {x.origin.line}",
                 f"'{stmt.target}' {format_shape(target.shape)} comes from line {target.origin.line}")
        if stmt.kind == "concat":
            if len(x.shape) == len(target.shape) and any(t < c for t, c in zip(target.shape[1:], x.shape[1:])):
                return Problem(stmt.target_span,
                               f"concat '{stmt.target}': {format_shape(target.shape)} is smaller than the current "
                               f"tensor {format_shape(x.shape)} and cannot be cropped to it",
                               hint="concat the larger tensor onto the smaller one's path", notes=notes)
            return Problem(stmt.target_span,
                           f"concat '{stmt.target}': spatial sizes differ: current {format_shape(x.shape)}, "
                           f"'{stmt.target}' {format_shape(target.shape)}",
                           hint="add ', crop=center' to crop the earlier tensor, or pad the convolutions",
                           notes=notes)
        return Problem(stmt.target_span,
                       f"{stmt.kind} '{stmt.target}': shapes do not broadcast: current {format_shape(x.shape)}, "
                       f"'{stmt.target}' {format_shape(target.shape)}",
                       hint="element-wise ops broadcast as numpy does: trailing dims aligned, "
                            "each pair equal or one of them 1 (a [C, 1, 1] gate times [C, H, W])",
                       notes=notes)
