"""``__init__`` pieces: an op's constructor, a block instance's call, and the channel
expressions that flow from one to the next.

Channels are followed as expressions in the instance's own names (a conv gives its
``out_channels`` expression, a concat a sum, a nested block its output expression
with the call's arguments substituted), each checked against this instance's value.
A mixin of :class:`~.generator.Generator`.
"""

from __future__ import annotations

from typing import Any

from ... import ir
from ...graph import op_node
from ...ops import REGISTRY
from .context import CodeArgs, Ctx
from .text import IN, Call, fold, int_expr, lit, literal_expr, names, pyname, substitute, substitute_input


class Constructors:
    """Constructor calls for ``__init__`` (see :class:`~.generator.Generator`)."""

    def child_call(self, path: str, ctx: Ctx, chan: dict) -> Any:
        box = self.boxes[path]
        if (box.kind == "shortcut" and self._simple_shortcut(path)) or \
                (box.kind in ("stage", "sequential", "block") and self.def_key(path) is None):
            return self.sequential(path, ctx, chan)
        return self.instance_call(path, ctx, chan)

    def sequential(self, path: str, ctx: Ctx, chan: dict) -> Call:
        """``nn.Sequential(...)`` of a chain of ops and containers named 0, 1, 2, ..."""
        box = self.boxes[path]
        # An inline block's statements are written in the block's names: the call's argument
        # expressions stand in for them (``conv_norm_act(mid, 3)``: its conv's width is ``mid``).
        mapping = self._call_mapping(path) if box.kind == "block" else None
        steps = self.children[path]
        items = [self.child_call(ref, ctx, chan) if kind == "child" else self.ctor(ref, ctx, chan, mapping)
                 for kind, ref in steps]
        if getattr(self, "inference", None) is not None:  # eval only: nothing keeps a tensor for backward
            items = [self._in_place_step(steps, k, item) for k, item in enumerate(items)]
        if self._positional(path):
            return Call("nn.Sequential", items)
        # Named children (DenseNet's conv0, RegNet's block1-0): as torchvision writes them.
        self.uses_ordered_dict = True
        names = [self._local(ref) if kind == "child" else op_node(self.graph, ref).module.rsplit(".", 1)[-1]
                 for kind, ref in steps]
        pairs = [Call("", [lit(name), item]) for name, item in zip(names, items)]
        return Call("nn.Sequential", [Call("OrderedDict", [Call("", pairs, "[]")])])

    def _in_place_step(self, steps: list, k: int, item: Call) -> Call:
        """In a chain, an activation right after an op whose output is fresh (a conv, a folded
        norm) may overwrite that output: nothing else reads it (torchvision's
        ``inplace=True``). Only in the inference build, which keeps no tensor for backward."""
        kind, ref = steps[k]
        if k == 0 or kind != "node" or steps[k - 1][0] != "node":
            return item
        spec = REGISTRY[op_node(self.graph, ref).op]
        before = REGISTRY[op_node(self.graph, steps[k - 1][1]).op]
        if spec.in_place and before.fresh_output and "inplace=True" not in item.args:
            return Call(item.func, item.args + ["inplace=True"])
        return item

    def instance_call(self, path: str, ctx: Ctx, chan: dict) -> Call:
        """``Bottleneck(64, width=64, out=256, downsample=True)`` in the parent's terms."""
        box = self.boxes[path]
        info = self.class_of[path]
        in_value = op_node(self.graph, box.input).shape[0]
        in_sym = chan.get(box.input)
        args = [ctx.expr(in_sym, in_value, self.dependence.shapes[box.input][0])]
        mapping: dict[str, ir.Expr] = {IN: in_sym if in_sym is not None else int_expr(in_value)}
        call_exprs = self.call_exprs(path)
        own = self.context(path)
        for name, py, type_, default in info.params[1:]:
            value = own.env[name]
            if box.kind != "block":
                call_exprs[name] = ir.NameRef(name=name)
            expr = call_exprs.get(name)
            text = ctx.expr(expr, value, own.forms[name], type_ if type_ != "bool" else "bool")
            sym = ctx.sym(expr, value, type_)
            mapping[name] = sym if sym is not None else literal_expr(value)
            if default is not None and text == default:
                continue
            args.append(f"{py}={text}")
        for name in info.net_params:
            if name in ctx.net_params:
                ctx.used.add(name)
                args.append(f"{pyname(name)}={ctx.py[name]}")
            else:
                self.writes.literal(self.dependence.net_forms[name])
                args.append(f"{pyname(name)}={lit(self.net.params[name])}")
            mapping.setdefault(name, ir.NameRef(name=name) if name in ctx.net_params
                               else literal_expr(self.net.params[name]))
        for flag, _ in info.flags:
            if self.flag_values[path].get(flag):
                args.append(f"{flag}=True")
        out_value = op_node(self.graph, box.output).shape
        if info.out_sym is not None and out_value:
            sym = substitute(info.out_sym, mapping)
            chan[box.output] = ctx.sym(sym, out_value[0]) or int_expr(out_value[0])
        elif out_value:
            chan[box.output] = int_expr(out_value[0])
        return Call(info.name, args)

    def _call_mapping(self, path: str) -> dict[str, ir.Expr]:
        """A block call's parameters as the caller's expressions: the arguments written, and
        the defaults that are plain numbers."""
        block = self.block_ir.get(self.boxes[path].block or "")
        mapping = dict(self.call_exprs(path))
        for param in block.params if block is not None else ():
            if param.name not in mapping and param.default is not None and not names(param.default):
                mapping[param.name] = param.default
        return mapping

    def ctor(self, node: int, ctx: Ctx, chan: dict, mapping: dict[str, ir.Expr] | None = None) -> Call:
        """The torch constructor of one op, as its catalogue entry describes it, with the
        spec's expressions where they hold for this instance (``mapping``: an inline block's
        parameters in the caller's terms)."""
        data = op_node(self.graph, node)
        args, shape = data.args, data.shape
        spec = REGISTRY[data.op]
        forms = self.dependence.args[node]
        neutral = self.eval_neutral(node)
        exprs = {name: e for name, e in self.arg_exprs(node).items() if name not in neutral}
        if data.container == ctx.path and self.boxes[ctx.path].kind == "block":
            # ``channels(input)`` in the block's own scope is the class's ``in_channels``
            exprs = {k: substitute_input(e) for k, e in exprs.items()}
        own_exprs = mapping is None
        if mapping is not None:  # a literal after substitution is written as torch's default allows
            exprs = {k: s for k, e in exprs.items() if names(e) <= set(mapping)
                     if names(s := substitute(e, mapping))}
        rank = len(data.in_shapes[0]) - 1 if data.inputs else 0
        in_sym = chan.get(data.inputs[0]) if data.inputs else None
        width = next((name for name in spec.width_args if name in args), None)
        overrides: dict[str, str] = {}
        width_sym = ctx.sym(exprs.get(width), args[width]) if width else None
        if width and data.shortcut and isinstance(data.stmt, ir.Residual):
            # An automatic projection: its stride and width come from the shapes, so spell
            # them as the residual body does.
            body = self._body_chan(node, chan)
            overrides[width] = ctx.match(args[width], forms[width], "int", 0, body)
            width_sym = ctx.sym(body, args[width])
            if "stride" in args:
                overrides["stride"] = ctx.match(args["stride"], forms["stride"], "tuple", rank,
                                                *self._body_strides(node))
        call = spec.code(CodeArgs(self, spec, ctx, node, exprs, overrides, in_sym))
        # Channels for the next op: the op's width argument, else the input's when the op
        # keeps them (norms, pools, activations, a flatten of a 1x1 map), else the number.
        sym = None
        # An op that sets the width follows its width expression only: its input's channels
        # may equal its output's by coincidence (a depthwise conv of an unexpanded block).
        for candidate in (width_sym,) if width and not own_exprs else (width_sym, in_sym):
            sym = ctx.sym(candidate, shape[0]) if candidate is not None and shape else None
            if sym is not None:
                break
        chan[node] = sym if sym is not None else (int_expr(shape[0]) if shape else None)
        return call

    def _body_chan(self, node: int, chan: dict) -> ir.Expr | None:
        """For a projection: the channel expression of the residual body it must match."""
        for unit in self.units_of_shortcut.get(op_node(self.graph, node).container, ()):
            return chan.get(unit.body_output)
        return None

    def _body_strides(self, node: int) -> list[ir.Expr]:
        """For a projection: the stride expressions written in its residual body, in order."""
        for unit in self.units_of_shortcut.get(op_node(self.graph, node).container, ()):
            body = range(unit.input + 1, unit.body_output + 1)
            return [e for n in body if n in self.graph and (e := self.arg_exprs(n).get("stride")) is not None]
        return []

    def merge_chan(self, node: int, ctx: Ctx, chan: dict) -> ir.Expr | None:
        """A merge's (or inline op's) channels: its first input's when it keeps them (a sum,
        a product), else the inputs' sum when it stacks them (a concat), else the input's
        divided by a whole number (a chunk), else the number."""
        data = op_node(self.graph, node)
        shape = data.shape
        if not shape:
            return None
        inputs = [chan.get(n) for n in data.inputs]
        candidates = list(inputs)  # a broadcast keeps the widest input's (SE: the gated input's)
        if len(inputs) == 2 and None not in inputs:
            candidates.append(fold(ir.BinOp(op="+", left=inputs[0], right=inputs[1])))
        in_value = data.in_shapes[0][0] if data.in_shapes[0] else 0
        if len(inputs) == 1 and inputs[0] is not None and shape[0] and in_value % shape[0] == 0:
            # An inline op that keeps a fraction of the channels (chunk): ``in // k``.
            candidates.append(fold(ir.BinOp(op="//", left=inputs[0], right=ir.IntLit(value=in_value // shape[0]))))
        for candidate in candidates:
            sym = ctx.sym(candidate, shape[0]) if candidate is not None else None
            if sym is not None:
                return sym
        return int_expr(shape[0])
