"""Shape and regularisation ops: identity, upsample, dropout, flatten."""

from __future__ import annotations

from math import prod

from .base import ArgSpec, OpError, OpSpec, Shape, register

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _torch_mode(mode: str, rank: int) -> str:
    return _LINEAR_MODES[rank] if mode == "linear" else mode


def _upsample_out(in_shape: Shape, args: dict) -> Shape:
    rank = len(in_shape) - 1
    if args["mode"] == "bicubic" and rank != 2:
        raise OpError("mode=bicubic needs a 2-D input", hint="use mode=linear or nearest", arg="mode")
    return (in_shape[0], *(size * args["factor"] for size in in_shape[1:]))


def _build_upsample(in_shape: Shape, args: dict):
    from torch import nn

    mode = _torch_mode(args["mode"], len(in_shape) - 1)
    align = False if mode != "nearest" else None
    return nn.Upsample(scale_factor=args["factor"], mode=mode, align_corners=align)


def _build_simple(class_name: str, *init):
    def build(in_shape: Shape, args: dict):
        from torch import nn

        return getattr(nn, class_name)(*[args[name] if isinstance(name, str) else name for name in init])

    return build


register(OpSpec(
    name="identity",
    doc="Passes the tensor through unchanged.",
    category="reshape",
    positional=(),
    keywords=(),
    infer=lambda s, a: s,
    label=lambda a, i, o: "identity",
    build=_build_simple("Identity"),
))

register(OpSpec(
    name="upsample",
    doc="Upsampling by an integer factor (mode nearest, linear or bicubic).",
    category="reshape",
    positional=(ArgSpec("factor", "int", min=1),),
    keywords=(ArgSpec("mode", "enum", "nearest", choices=("nearest", "linear", "bicubic")),),
    infer=_upsample_out,
    label=lambda a, i, o: f"upsample x{a['factor']}",
    build=_build_upsample,
    min_rank=2,
))

register(OpSpec(
    name="dropout",
    doc="Dropout with probability p during training.",
    category="regularizer",
    positional=(ArgSpec("p", "float", 0.5, min=0.0, max=1.0),),
    keywords=(),
    infer=lambda s, a: s,
    label=lambda a, i, o: f"dropout {a['p']:g}",
    build=_build_simple("Dropout", "p"),
))

register(OpSpec(
    name="flatten",
    doc="Flattens [C, ...] to [C * ...].",
    category="reshape",
    positional=(),
    keywords=(),
    infer=lambda s, a: (prod(s),),
    label=lambda a, i, o: "flatten",
    build=_build_simple("Flatten", 1),
))
