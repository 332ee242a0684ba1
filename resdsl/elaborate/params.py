"""Network parameters, ``-D`` overrides and the input shape."""

from __future__ import annotations

from math import prod
from typing import Any, Mapping

from .. import ir
from ..errors import Problem, Span, did_you_mean
from ..expr import INT_LIMIT, Value, describe, evaluate
from ..shapes import Shape, format_shape
from .values import _convert, _parse_literal, _plain, _shown


class ParamsMixin:
    """Network parameters, ``-D`` overrides and the input shape."""

    # ---- parameters ---------------------------------------------------------------
    def network_params(self) -> dict[str, Value]:
        net = self.network
        declared = {p.name: p for p in net.params}
        for name in self.overrides:
            if name not in declared:
                hint = did_you_mean(name, declared) or (
                    f"network '{net.name}' has no parameters" if not declared else None
                )
                self.error(net.span, f"unknown parameter '{name}' for network '{net.name}'",
                           hint=hint)
        env: dict[str, Value] = {}
        for param in net.params:
            value = None
            if param.name in self.overrides:
                value = self.coerce_override(param, self.overrides[param.name])
            if value is None and param.default is not None:  # also after a bad override, to avoid cascades
                value = self.eval_param_default(param, env)
            elif value is None and param.name not in self.overrides:
                self.error(param.span, f"network parameter '{param.name}' has no default and no value",
                           hint=f"give it a default, or pass -D {param.name}=VALUE")
            if value is not None:
                env[param.name] = value
        return env

    def coerce_override(self, param: ir.Param, value: Any) -> Value | None:
        value = _plain(value)  # API values may be subclasses with their own repr, str, eq...
        text = value
        if isinstance(value, str):
            value = _parse_literal(value)
        converted = _convert(value, param.type)
        if converted is None:
            self.error(
                param.span,
                f"override {param.name}={_shown(text)} is not a valid {param.type}",
                hint=f"'{param.name}' is declared as {param.type}",
            )
        elif isinstance(converted, (int, float)) and not isinstance(converted, bool) and \
                (converted != converted or abs(converted) > INT_LIMIT):
            # Overrides obey the bounds of spec literals (-D n=1e400 or n=10**5000).
            self.error(
                param.span,
                f"override {param.name}={_shown(text)} is out of range (limit is +-2**31)",
                hint="use smaller numbers",
            )
            return None
        return converted

    def eval_param_default(self, param: ir.Param, env: dict[str, Value]) -> Value | None:
        try:
            value = evaluate(param.default, env)
        except Problem as problem:
            self.report(problem)
            return None
        converted = _convert(value, param.type)
        if converted is None:
            self.error(param.default.span,
                       f"default of '{param.name}' is {describe(value)}, not a {param.type}",
                       hint=f"give '{param.name}' a {param.type} default")
        return converted

    def input_shape(self, decl: ir.Input, env: Mapping[str, Value]) -> Shape | None:
        dims = []
        for expr in decl.shape:
            try:
                value = evaluate(expr, env)
            except Problem as problem:
                self.report(problem)
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self.error(expr.span, f"input size must be a positive integer, not {describe(value)}",
                           hint="write the shape without the batch dimension, e.g. [3, 224, 224]")
                return None
            dims.append(value)
        if not 1 <= len(dims) <= 4:
            self.error(decl.span, f"input rank must be 1 to 4 ([C], [C, L], [C, H, W] or [C, D, H, W]), "
                       f"got {len(dims)}", hint="give the shape without the batch dimension")
            return None
        return self.checked_size(tuple(dims), decl.span)

    def checked_size(self, shape: Shape | None, span: Span) -> Shape | None:
        if shape is not None and prod(shape) > self.limits.max_tensor_elements:
            self.error(span, f"tensor {format_shape(shape)} has {prod(shape):,} elements per sample, "
                       f"over the limit of {self.limits.max_tensor_elements:,}",
                       hint="use smaller sizes")
            return None
        return shape
