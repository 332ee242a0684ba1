"""Ops resdsl makes itself: the input, residual merges, long skips, option-A shortcuts.

They are not callable by name from a spec (``add LABEL`` and friends are statements),
but live in the catalogue so every back end finds every op in one place.
"""

from __future__ import annotations

from math import prod
from typing import Any, Callable, Mapping, Protocol

from .base import BOX, POINTWISE, Diagram, OpError, OpSpec, Shape, TorchCall, TensorRef, Window, register, sample_dim

MERGE = Diagram(kind="merge")  # a small circle ("+", "x"), or a small box ("concat")


class MergeCode(Protocol):
    """What a merge's ``merge_code`` may ask (the code generator's forward writer)."""

    inputs: list[str]  # Python names of the op's input tensors, in order
    args: Mapping[str, Any]  # resolved arguments
    rank: int  # spatial rank of the first input
    shapes: tuple[tuple[int, ...], ...]  # the inputs' per-sample shapes
    out_shape: tuple[int, ...]  # the output's per-sample shape
    batched: tuple[bool, ...]  # per input: it has a batch dim (a parameter has none)
    single: tuple[bool, ...]  # per input: its batch dim is one (a parameter with batch=true)

    def lit(self, value: Any) -> str:
        """A constant as Python source."""

    def value(self, name: str) -> str:
        """Argument ``name`` as Python: an attribute the constructor set from its arguments
        (``self.drop_path``, so instances that differ only in it share a class), else a literal."""

    def written(self, name: str) -> bool:
        """Whether the spec wrote argument ``name`` (a written value stays in the code)."""

    def helper(self, name: str) -> str:
        """Declare a name the file must define (``F``, or a helper of
        :mod:`resdsl.ops.torch_layers`) and return it."""


def _same_shapes(shapes: list[Shape], args: dict) -> Shape:
    first = shapes[0]
    for other in shapes[1:]:
        if other != first:
            raise OpError("shapes differ")
    return first


def broadcast(shapes: list[Shape], args: dict) -> Shape:
    """numpy's rule on per-sample shapes: trailing dims aligned, each pair equal or one 1."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise OpError("shapes do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _broadcast_code(symbol: str) -> Callable[[MergeCode], str]:
    def code(m: MergeCode) -> str:
        names = list(m.inputs)
        for index, (shape, batched) in enumerate(zip(m.shapes, m.batched)):
            missing = len(m.out_shape) - len(shape)
            if batched and missing:  # align a batched tensor's per-sample dims to the right
                names[index] = f"{names[index]}[:, {', '.join(['None'] * missing)}]"
        return f" {symbol} ".join(names)  # equal shapes: ``a + b``, as in v1

    return code


def _concat_shapes(shapes: list[Shape], args: dict) -> Shape:
    current, other = shapes
    if len(current) != len(other):
        raise OpError("ranks differ")
    if len(current) == 1:
        return (current[0] + other[0],)
    if args.get("crop") == "center":
        if any(o < c for o, c in zip(other[1:], current[1:])):
            raise OpError("cannot crop a smaller tensor")
        return (current[0] + other[0], *current[1:])
    if other[1:] != current[1:]:
        raise OpError("spatial sizes differ")
    return (current[0] + other[0], *current[1:])


def _merge(name: str, doc: str, infer, label, code: Callable[[MergeCode], str],
           macs=lambda i, o, a: prod(o), in_place: bool = False, fresh: bool = True,
           receptive_field=POINTWISE, diagram: Diagram = MERGE, broadcasts: bool = False,
           expands: bool = False, torch_calls: tuple[str, ...] = (),
           from_call: Callable[[TorchCall], dict | None] | None = None, eval_args: tuple = (),
           onednn_binary: str | None = None) -> None:
    # Merges are statements, not modules: the code generator writes them inline. A merge's
    # receptive field is the widest of its inputs' (the analysis takes it) and its own.
    register(OpSpec(
        name=name, doc=doc, category="merge", positional=(), keywords=(),
        infer=infer, label=label, macs=macs, internal=True,
        receptive_field=receptive_field, nonlinear=False, diagram=diagram,
        merge_code=code, in_place=in_place, fresh_output=fresh, takes_unbatched=broadcasts,
        takes_single=broadcasts or expands, torch_calls=torch_calls, from_call=from_call,
        eval_args=eval_args, onednn_binary=onednn_binary,
    ))


def _binary_call(call: TorchCall) -> dict | None:
    """``a + b`` (no ``alpha``) of two tensors: the merge, whichever the current one is."""
    # a + b: input 0 is a, the one argument left is b
    return {} if len(call.inputs) == 2 and call.args == (TensorRef(1),) and not call.kwargs else None


def _cat_call(call: TorchCall) -> dict | None:
    """``torch.cat([a, b], 1)``: along the channels (a flat tensor's features)."""
    tensors = call.arg(0, "tensors", ())
    dim = sample_dim(call.arg(1, "dim", 0), len(call.inputs[0])) if call.inputs else None
    if dim != 0 or not isinstance(tensors, (list, tuple)) or len(tensors) < 2:
        return None
    return {}


def _residual_code(m: MergeCode) -> str:
    body = m.inputs[0]
    if m.args["drop_path"] != 0.0 or m.written("drop_path"):
        body = f"{m.helper('_drop_path')}({body}, {m.value('drop_path')}, self.training)"
    if m.args["scale"] != 1.0 or m.written("scale"):
        body = f"{body} * {m.value('scale')}"
    return f"{body} + {m.inputs[1]}"


def _concat_code(m: MergeCode) -> str:
    names = list(m.inputs)
    full = next((n for n, single in zip(names, m.single) if not single), names[0])
    for index, single in enumerate(m.single):  # a class token: one copy per sample
        if single:
            names[index] = f"{names[index]}.expand({full}.shape[0], {', '.join(['-1'] * (m.rank + 1))})"
    current, other = names
    if m.args.get("crop") == "center":
        dims = list(range(2, m.rank + 2))
        other = f"{m.helper('_center_crop')}({other}, {current}, {dims!r})"
    return f"torch.cat([{current}, {other}], 1)"


def _zero_pad_code(m: MergeCode) -> str:
    stride = ", ".join("::" + m.lit(s) for s in m.args["stride"])
    pad = "(" + "0, 0, " * m.rank + f"0, {m.lit(m.args['channels'])})"
    return f"{m.helper('F')}.pad({m.inputs[0]}[:, :, {stride}], {pad})"


register(OpSpec(
    name="input", doc="The network's input tensor.", category="io", positional=(), keywords=(),
    infer=lambda s, a: s, label=lambda a, i, o: "input", internal=True,
    receptive_field=POINTWISE, nonlinear=False, diagram=Diagram(kind="input"),
))
_merge("residual_add", "out = scale * drop_path(body) + shortcut", _same_shapes, lambda a, i, o: "+",
       _residual_code, in_place=True,  # out += identity
       eval_args=(("drop_path", 0.0),))  # stochastic depth is the identity in eval mode
_merge("add", "Element-wise sum with an earlier tensor (long skip); shapes broadcast (numpy's rule).",
       broadcast, lambda a, i, o: "+", _broadcast_code("+"), broadcasts=True,
       torch_calls=("_operator.add", "_operator.iadd", "torch.add", "Tensor.add", "Tensor.add_"),
       from_call=_binary_call, onednn_binary="add")
_merge("mul", "Element-wise product with an earlier tensor (gating); shapes broadcast (numpy's rule, "
       "a [C, 1, 1] gate times [C, H, W]).", broadcast, lambda a, i, o: "x", _broadcast_code("*"),
       broadcasts=True, torch_calls=("_operator.mul", "_operator.imul", "torch.mul", "Tensor.mul", "Tensor.mul_"),
       from_call=_binary_call)
_merge("concat", "Channel concatenation [current, earlier], optionally center-cropping the earlier.",
       _concat_shapes, lambda a, i, o: "concat", _concat_code, macs=lambda i, o, a: 0, expands=True,
       torch_calls=("torch.cat", "torch.concat"), from_call=_cat_call)


def _zero_pad_shape(in_shape: Shape, args: dict) -> Shape:
    sizes = tuple(-(-size // s) for size, s in zip(in_shape[1:], args["stride"]))
    return (in_shape[0] + args["channels"], *sizes)


def _zero_pad_label(args: dict, in_shape: Shape, out_shape: Shape) -> str:
    """``zero-pad to 32, /2``: the channels it pads to and its stride, as He et al. describe option A."""
    strides = set(args["stride"])
    step = f", /{strides.pop()}" if len(strides) == 1 and max(args["stride"]) > 1 else \
        "" if max(args["stride"]) == 1 else ", /" + "x".join(map(str, args["stride"]))
    return f"zero-pad to {out_shape[0]}{step}"


_merge("zero_pad", "Option-A shortcut: strided subsampling, then zero channels appended.",
       lambda shapes, args: _zero_pad_shape(shapes[0], args),
       _zero_pad_label, _zero_pad_code, macs=lambda i, o, a: 0, fresh=False,
       receptive_field=lambda i, o, a: Window((1,) * len(a["stride"]), a["stride"]),
       diagram=BOX)  # drawn as a box on the shortcut, not as a merge


def merge_shape(name: str, shapes: list[Shape], args: dict) -> Shape:
    """Output shape of an internal op; raises :class:`OpError` on a mismatch."""
    from .base import REGISTRY

    return REGISTRY[name].infer(shapes, args)
