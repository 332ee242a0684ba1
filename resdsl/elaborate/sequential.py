"""``sequential:`` bodies (positional names, as nn.Sequential) and learnable tensors."""

from __future__ import annotations

from collections import ChainMap
from math import prod

from .. import ir
from ..errors import Problem
from ..expr import describe, evaluate
from ..graph import Container
from ..vocab import PARAMETER_WORD
from .scope import Scope, Tensor


def is_sequential_block(block: ir.Block) -> bool:
    """A block whose whole body is one unlabelled ``sequential:``: the block instance itself
    is the nn.Sequential (torchvision's Conv2dNormActivation), adding no level of names."""
    return len(block.body) == 1 and isinstance(block.body[0], ir.Sequential) and block.body[0].label is None


class SequentialMixin:
    """``sequential:`` bodies and ``parameter`` statements."""

    def sequential(self, stmt: ir.Sequential, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        """A scope whose children are named 0, 1, 2 (labelled ones by their label) and
        run one after another, as an ``nn.Sequential``."""
        for item in stmt.body:
            self.check_chain_item(item)
        name = self.module_name(scope, stmt.label, "sequential", stmt.span)
        path = scope.module_path(name)
        inner = Scope(path=path, container=path, env=ChainMap({}, scope.env), labels={"input": x},
                      reserved=self.declared_labels(stmt.body), sequential=True, depth=scope.depth + 1,
                      notes=scope.notes, block_stack=scope.block_stack)
        if scope.depth >= self.limits.max_depth:
            raise Problem(stmt.span, f"blocks are nested more than {self.limits.max_depth} deep",
                          hint="flatten the structure")
        container = Container(path, "sequential", stmt.span, input=x.node, stmt=stmt)
        self.open_container(scope, container, inner)
        out = self.body(stmt.body, inner, x, defaults)
        container.output = out.node
        self.set_label(scope, stmt.label, out, stmt.span)
        return out

    def check_chain_item(self, item: ir.Stmt) -> None:
        """A sequential's statements form a chain, each taking the one before's output."""
        if isinstance(item, (ir.If, ir.Repeat)):
            for body in ir.bodies(item):
                for inner in body:
                    self.check_chain_item(inner)
            return
        what = None
        if isinstance(item, ir.Ref):
            what = f"'{item.kind}'"
        elif isinstance(item, ir.Residual) and item.label is None:
            what = "an unlabelled 'residual'"
        elif isinstance(item, ir.Apply) and item.name == PARAMETER_WORD:
            what = "'parameter'"
        elif isinstance(item, ir.Apply) and item.name in self.ops and self.ops[item.name].inline_code:
            what = f"'{item.name}' (an op without a module)"
        elif isinstance(item, ir.Apply) and item.name in self.ops and self.ops[item.name].call:
            what = f"'{item.name}' (a module that nn.Sequential cannot call on one tensor)"
        if what is not None:
            raise Problem(item.span, f"{what} cannot stand in a sequential body: its statements "
                          "run one after another, each on the previous one's output (as nn.Sequential)",
                          hint="put it in a block, and call the block here")

    # ---- learnable tensors -----------------------------------------------------------
    def parameter(self, stmt: ir.Apply, scope: Scope) -> Tensor:
        """``[label:] parameter D1, D2, ..., init=V | std=S [, batch=true]``: an nn.Parameter of
        that exact shape, registered on the enclosing module under its label; ``batch=true``
        reads D1 (which must be 1) as a batch dim (ViT's class token ``1, 1, D``)."""
        if stmt.label is None:
            raise Problem(stmt.span, "a parameter needs a label: it becomes the module attribute "
                          "that holds the tensor", hint="write e.g. 'layer_scale: parameter C, 1, 1, init=1e-6'")
        dims, init, std, batch = [], 0.0, 0.0, False
        for arg in stmt.args:
            value = evaluate(arg.value, scope.env, scope.shape_of)
            if arg.name is None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise Problem(arg.span, f"a parameter's dimensions are positive integers, not "
                                  f"{describe(value)}", hint="write e.g. 'parameter 96, 1, 1'")
                dims.append(value)
            elif arg.name == "init":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise Problem(arg.span, f"init must be a number, not {describe(value)}",
                                  hint="write e.g. init=1e-6 (every element starts at that value)")
                init = float(value)
            elif arg.name == "std":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise Problem(arg.span, f"std must be a positive number, not {describe(value)}",
                                  hint="write e.g. std=0.02 (normal init with that deviation)")
                std = float(value)
            elif arg.name == "batch":
                if not isinstance(value, bool):
                    raise Problem(arg.span, f"batch must be true or false, not {describe(value)}",
                                  hint="write batch=true for a leading batch dim of one")
                batch = value
            else:
                raise Problem(arg.span, f"parameter has no option '{arg.name}'",
                              hint="parameter D1, D2, ... [, init=V | std=S] [, batch=true]")
        if not 1 <= len(dims) <= 5:
            raise Problem(stmt.span, f"a parameter has 1 to 5 dimensions, not {len(dims)}",
                          hint="write e.g. 'parameter 96, 1, 1'")
        if batch and (len(dims) < 2 or dims[0] != 1):
            raise Problem(stmt.span, f"batch=true reads the first dimension as a batch dim of one: "
                          f"write 1 first, then the per-sample shape, not {', '.join(map(str, dims))}",
                          hint="e.g. 'class_token: parameter 1, 1, dim, batch=true'")
        if init and std:
            raise Problem(stmt.span, "a parameter starts constant (init=) or normal (std=), not both",
                          hint="keep one of them")
        shape = tuple(dims)
        count = prod(shape)
        if count > self.limits.max_weight_elements:
            raise Problem(stmt.span, f"parameter would have {count:,} elements, over the limit of "
                          f"{self.limits.max_weight_elements:,}", hint="use smaller sizes")
        name = self.module_name(scope, stmt.label, PARAMETER_WORD, stmt.span)
        args = {"dims": shape, "init": init, "std": std, "batch": batch}
        out = self.add_node(PARAMETER_WORD, args, [], [], shape[1:] if batch else shape, scope, stmt,
                            module=scope.module_path(name), label=stmt.label, params=count)
        self.set_label(scope, stmt.label, out, stmt.span)
        return out
