"""Shape and regularisation ops: identity, upsample, dropout, flatten."""

from __future__ import annotations

from math import prod

from .base import (
    BOX, GLOBAL, OMIT, POINTWISE, ArgSpec, Diagram, OpError, OpSpec, ReceptiveField, Shape, Window,
    register,
)

SILENT = Diagram(fold="silent")  # drawn inside the box before it, without a label
REGULARIZER = Diagram(fold="label")  # inside the box before it, with its label

#: Input positions an interpolated output position reads, per dimension.
_TAPS = {"nearest": 1, "linear": 2, "bicubic": 4}

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _torch_mode(mode: str, rank: int) -> str:
    return _LINEAR_MODES[rank] if mode == "linear" else mode


def _upsample_out(in_shape: Shape, args: dict) -> Shape:
    rank = len(in_shape) - 1
    if args["mode"] == "bicubic" and rank != 2:
        raise OpError("mode=bicubic needs a 2-D input", hint="use mode=linear or nearest", arg="mode")
    return (in_shape[0], *(size * args["factor"] for size in in_shape[1:]))


def _upsample_field(in_shape: Shape, out_shape: Shape, args: dict) -> Window:
    rank = len(in_shape) - 1
    return Window((_TAPS[args["mode"]],) * rank, (1,) * rank, upscale=(args["factor"],) * rank)


def _flatten_field(in_shape: Shape, out_shape: Shape, args: dict) -> ReceptiveField:
    # What follows (a linear layer) mixes every position of a spatial map.
    return GLOBAL if any(n > 1 for n in in_shape[1:]) else POINTWISE


def _upsample_code(c):
    mode = _torch_mode(c.args["mode"], c.rank)
    align = c.lit(False) if mode != "nearest" else OMIT  # torch warns unless it is explicit
    return c.call("nn.Upsample", scale_factor=c.arg("factor"), mode=c.lit(mode), align_corners=align)


register(OpSpec(
    name="identity",
    doc="Passes the tensor through unchanged.",
    category="reshape",
    positional=(),
    keywords=(),
    infer=lambda s, a: s,
    label=lambda a, i, o: "identity",
    code=lambda c: c.call("nn.Identity"),
    receptive_field=POINTWISE, nonlinear=False, diagram=SILENT,
))

register(OpSpec(
    name="upsample",
    doc="Upsampling by an integer factor (mode nearest, linear or bicubic).",
    category="reshape",
    positional=(ArgSpec("factor", "int", min=1),),
    keywords=(ArgSpec("mode", "enum", "nearest", choices=("nearest", "linear", "bicubic")),),
    infer=_upsample_out,
    label=lambda a, i, o: f"upsample x{a['factor']}",
    code=_upsample_code,
    min_rank=2,
    receptive_field=_upsample_field, nonlinear=False, diagram=SILENT,
))

register(OpSpec(
    name="dropout",
    doc="Dropout with probability p during training.",
    category="regularizer",
    positional=(ArgSpec("p", "float", 0.5, min=0.0, max=1.0),),
    keywords=(),
    infer=lambda s, a: s,
    label=lambda a, i, o: f"dropout {a['p']:g}",
    code=lambda c: c.call("nn.Dropout", c.arg("p")),
    receptive_field=POINTWISE, nonlinear=False, diagram=REGULARIZER,
))

register(OpSpec(
    name="flatten",
    doc="Flattens [C, ...] to [C * ...].",
    category="reshape",
    positional=(),
    keywords=(),
    infer=lambda s, a: (prod(s),),
    label=lambda a, i, o: "flatten",
    code=lambda c: c.call("nn.Flatten", c.lit(1)),
    receptive_field=_flatten_field, nonlinear=False, diagram=SILENT,
))


register(OpSpec(
    name="parameter",
    doc="A learnable tensor of a given shape, filled with one value (``[label:] parameter D1, ..., "
        "init=V``); a statement of the language, not called on an input.",
    category="io",
    positional=(),
    keywords=(),
    infer=lambda s, a: a["dims"],
    params=lambda s, a: prod(a["dims"]),
    label=lambda a, i, o: f"parameter {'x'.join(map(str, a['dims']))}",
    code=lambda c: c.call("_parameter", c.lit(c.args["dims"]), c.lit(c.args["init"])),
    internal=True,
    source=True,
    receptive_field=POINTWISE, nonlinear=False, diagram=BOX,
))
