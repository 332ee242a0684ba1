"""Residual units: options, the body, the shortcut (identity, projection, zero-pad or explicit) and the merge."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ir
from ..errors import Problem
from ..expr import describe, evaluate
from ..graph import Container, ResidualUnit, op_edge, op_node, set_edge, update_node
from ..ops import REGISTRY, projection
from ..shapes import Shape, format_shape
from ..vocab import SHORTCUT_POLICIES, identifier_problem
from .scope import Scope, Tensor


class ResidualsMixin:
    """Residual units: options, the body, the shortcut (identity, projection, zero-pad or explicit) and the merge."""

    # ---- residual units -------------------------------------------------------------
    def residual_options(self, stmt: ir.Residual, scope: Scope) -> "ResidualOptions":
        policy, drop_path, scale, proj, shortcut_first = "auto", 0.0, 1.0, "downsample", False
        for option in stmt.options:
            value = evaluate(option.value, scope.env, scope.shape_of)
            if option.name == "shortcut":
                if value not in SHORTCUT_POLICIES:
                    shown = f"'{value}'" if isinstance(value, str) else describe(value)
                    raise Problem(option.span, f"unknown shortcut policy {shown}",
                                  hint=f"shortcut is one of {', '.join(SHORTCUT_POLICIES)}")
                policy = value
            elif option.name == "drop_path":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                    raise Problem(option.span, f"drop_path must be a probability in [0, 1), not {describe(value)}",
                                  hint="write e.g. drop_path=0.1")
                drop_path = float(value)
            elif option.name == "scale":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise Problem(option.span, f"scale must be a number, not {describe(value)}",
                                  hint="write e.g. scale=0.1")
                scale = float(value)
            elif option.name == "proj":
                if not isinstance(value, str) or not value.isidentifier():
                    raise Problem(option.span, f"proj= takes a name for the shortcut submodule, not "
                                  f"{describe(value)}", hint="write e.g. proj=proj (RegNet) or proj=shortcut")
                problem = identifier_problem(value, "proj=")  # it becomes a module attribute
                if problem is not None:
                    raise Problem(option.span, problem[0], hint=problem[1])
                proj = value
            elif option.name == "shortcut_first":
                if not isinstance(value, bool):
                    raise Problem(option.span, f"shortcut_first takes true or false, not {describe(value)}",
                                  hint="write shortcut_first=true")
                shortcut_first = value
            else:
                raise Problem(option.span, f"residual has no option '{option.name or describe(value)}'",
                              hint="residual [shortcut=P] [, drop_path=p] [, scale=s] [, proj=NAME] "
                                   "[, shortcut_first=true]:")
        return ResidualOptions(policy, drop_path, scale, proj, shortcut_first)

    def residual(self, stmt: ir.Residual, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        options = self.residual_options(stmt, scope)
        policy, drop_path, scale = options.policy, options.drop_path, options.scale
        if scope.depth >= self.limits.max_depth:
            raise Problem(stmt.span, f"residuals are nested more than {self.limits.max_depth} deep",
                          hint="flatten the structure")
        if self.forced_policy is not None and stmt.shortcut is None:
            policy = self.forced_policy
        if stmt.label is not None:
            name = self.module_name(scope, stmt.label, "residual", stmt.span)
            path = scope.module_path(name)
            inner = Scope(path=path, container=path, env=scope.env, labels={"input": x},
                          reserved=self.declared_labels(stmt.body), depth=scope.depth + 1,
                          notes=scope.notes, block_stack=scope.block_stack)
            self.open_container(scope, Container(path, "residual", stmt.span, input=x.node, stmt=stmt), inner)
        else:
            inner = scope
        first_node = self.nodes
        # An unlabelled body shares its scope but still nests: count it against max_depth.
        depth_bump = 1 if inner is scope else 0
        scope.depth += depth_bump
        try:
            body_out = self.body(stmt.body, inner, x, defaults)
        finally:
            scope.depth -= depth_bump
        # The body's last zero-init norm off any shortcut: kept as it is made, not searched
        # for (a search per unit cost O(depth x nodes) in nested residuals).
        last_norm = self.norms[-1] if self.norms and self.norms[-1] >= first_node else None
        if self.plain or (policy == "none" and stmt.shortcut is None):
            out, kind = body_out, "none"
        else:
            shortcut, kind, edge = self.shortcut(stmt, inner, x, body_out, policy, defaults, options.proj)
            out = self.merge(stmt, inner, body_out, shortcut, edge, scale, drop_path)
        if stmt.label is not None:
            self.graph.graph["containers"][inner.container].output = out.node
        self.graph.graph["residuals"].append(ResidualUnit(
            merge=out.node, input=x.node, body_output=body_out.node, shortcut=kind,
            last_norm=last_norm, container=inner.container, span=stmt.span, stmt=stmt,
            first=first_node, shortcut_first=options.shortcut_first,
        ))
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def shortcut(self, stmt, scope: Scope, x: Tensor, body_out: Tensor, policy: str, defaults: dict,
                 proj: str = "downsample"):
        if stmt.shortcut is not None and not self.plain:
            if policy not in ("auto",):
                raise Problem(stmt.shortcut_span, f"shortcut={policy} and an explicit 'shortcut:' path conflict",
                              hint="keep one: the explicit path replaces the policy")
            out, edge = self.explicit_shortcut(stmt, scope, x, defaults, proj)
            return out, "explicit", edge
        if x.shape is None or body_out.shape is None:
            return x, "identity", "skip-identity"
        match = x.shape == body_out.shape
        if policy == "identity" and not match:
            raise Problem(stmt.span, f"shortcut=identity, but the body changes the shape from "
                          f"{format_shape(x.shape)} to {format_shape(body_out.shape)}",
                          hint="use shortcut=auto (projection) or shortcut=A (zero-padding), or keep the shape",
                          notes=(f"the body's output comes from line {body_out.origin.line}",))
        if policy == "C" or (policy in ("auto", "B") and not match):
            return self.projection(stmt, scope, x, body_out.shape, proj), "projection", "skip-projection"
        if policy == "A" and not match:
            return self.zero_pad(stmt, scope, x, body_out.shape), "zero-pad", "skip-zero-pad"
        return x, "identity", "skip-identity"

    def shortcut_stride(self, stmt, x_shape: Shape, target: Shape, what: str) -> tuple[int, ...]:
        if len(x_shape) != len(target):
            raise Problem(stmt.span, f"{what} shortcut cannot turn {format_shape(x_shape)} into "
                          f"{format_shape(target)} (different ranks)", hint="add an explicit 'shortcut:' path")
        strides = []
        for size, out in zip(x_shape[1:], target[1:]):
            stride = -(-size // out)
            if out > size or -(-size // stride) != out:
                raise Problem(stmt.span, f"{what} shortcut cannot turn {format_shape(x_shape)} into "
                              f"{format_shape(target)}: the spatial size must shrink by an integer stride",
                              hint="add an explicit 'shortcut:' path that produces the body's shape")
            strides.append(stride)
        return tuple(strides)

    def shortcut_scope(self, scope: Scope, stmt, x: Tensor, proj: str) -> Scope:
        # torchvision's name for the first projection; later ones are downsample_1, _2, ...
        base = proj
        scope.counters.setdefault(base, 1)
        name = self.module_name(scope, base if base not in scope.used else None, base, stmt.span)
        path = scope.module_path(name)
        self.open_container(scope, Container(path, "shortcut", stmt.span, input=x.node, stmt=stmt))
        return Scope(path=path, container=path, env=scope.env, labels={"input": x}, reserved=set(),
                     sequential=True, depth=scope.depth + 1, notes=scope.notes,
                     block_stack=scope.block_stack)

    def projection(self, stmt, scope: Scope, x: Tensor, target: Shape, proj: str) -> Tensor:
        strides = self.shortcut_stride(stmt, x.shape, target, "projection")
        inner = self.shortcut_scope(scope, stmt, x, proj)
        out = x
        for index, (op, args) in enumerate(projection(x.shape, target, strides)):  # the catalogue's recipe
            spec = REGISTRY[op]
            shape = spec.infer(out.shape, args)
            out = self.add_node(op, args, [out], ["skip-projection"], shape, inner, stmt,
                                module=inner.module_path(str(index)), params=spec.params(out.shape, args),
                                shortcut=True)
        self.graph.graph["containers"][inner.container].output = out.node
        return out

    def zero_pad(self, stmt, scope: Scope, x: Tensor, target: Shape) -> Tensor:
        strides = self.shortcut_stride(stmt, x.shape, target, "option A")
        extra = target[0] - x.shape[0]
        if extra < 0:
            raise Problem(stmt.span, f"option A pads channels with zeros, but the body reduces them "
                          f"({x.shape[0]} -> {target[0]})", hint="use shortcut=B (projection)")
        args = {"stride": strides, "channels": extra}
        name = self.module_name(scope, None, "zero_pad", stmt.span)
        return self.add_node("zero_pad", args, [x], ["skip-zero-pad"], target, scope, stmt,
                             module=scope.module_path(name), shortcut=True)

    def explicit_shortcut(self, stmt, scope: Scope, x: Tensor, defaults: dict, proj: str) -> tuple[Tensor, str]:
        inner = self.shortcut_scope(scope, stmt, x, proj)
        first = self.nodes
        out = self.body(stmt.shortcut, inner, x, defaults)
        created = range(first, self.nodes)
        while self.norms and self.norms[-1] >= first:  # shortcut norms are no body's last norm
            self.norms.pop()
        weighted = any(op_node(self.graph, n).params for n in created)
        kind = "skip-projection" if weighted else "skip-identity"
        for node in created:
            update_node(self.graph, node, shortcut=True)
            for pred in self.graph.predecessors(node):
                set_edge(self.graph, pred, node, replace(op_edge(self.graph, pred, node), kind=kind))
        self.graph.graph["containers"][inner.container].output = out.node
        return out, kind

    def merge(self, stmt, scope: Scope, body_out: Tensor, shortcut: Tensor, edge: str,
              scale: float, drop_path: float) -> Tensor:
        shape = None
        if body_out.shape is not None and shortcut.shape is not None:
            if body_out.shape != shortcut.shape:
                raise Problem(stmt.span, f"residual: the body gives {format_shape(body_out.shape)} but the "
                              f"shortcut gives {format_shape(shortcut.shape)}",
                              hint="make the shortcut path produce the body's shape",
                              notes=(f"the body's output comes from line {body_out.origin.line}",
                                     f"the shortcut's output comes from line {shortcut.origin.line}"))
            shape = body_out.shape
        name = self.module_name(scope, None, "residual_add", stmt.span)
        return self.add_node("residual_add", {"scale": scale, "drop_path": drop_path},
                             [body_out, shortcut], ["data", edge], shape, scope, stmt,
                             module=scope.module_path(name))


@dataclass(frozen=True)
class ResidualOptions:
    """A residual statement's options, evaluated."""

    policy: str
    drop_path: float
    scale: float
    proj: str  # the projection shortcut's submodule name
    shortcut_first: bool  # its modules registered before the body's
