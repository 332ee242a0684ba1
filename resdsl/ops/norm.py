"""Normalization layers: batchnorm, layernorm (over channels), groupnorm."""

from __future__ import annotations

from math import prod

from .base import ArgSpec, OpError, OpSpec, Shape, register


def _build_batchnorm(in_shape: Shape, args: dict):
    from torch import nn

    cls = (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[len(in_shape) - 1]
    return cls(in_shape[0], eps=args["eps"], momentum=args["momentum"])


def _build_layernorm(in_shape: Shape, args: dict):
    from torch import nn

    if len(in_shape) == 1:
        return nn.LayerNorm(in_shape[0], eps=args["eps"])
    from ..backends.layers import ChannelLayerNorm

    return ChannelLayerNorm(in_shape[0], eps=args["eps"])


def _groupnorm_shape(in_shape: Shape, args: dict) -> Shape:
    if in_shape[0] % args["groups"]:
        raise OpError(
            f"groups={args['groups']} does not divide the {in_shape[0]} channels",
            hint="choose a number of groups that divides the channel count", arg="#0",
        )
    if in_shape[0] // args["groups"] * prod(in_shape[1:]) == 1:
        # One value per group normalizes to exactly 0 (torch refuses it outright at batch 1).
        raise OpError(
            f"each of the {args['groups']} groups holds a single value of the input "
            f"[{', '.join(map(str, in_shape))}], which always normalizes to 0",
            hint="use fewer groups, or normalize before the spatial size shrinks to 1", arg="#0",
        )
    return in_shape


def _build_groupnorm(in_shape: Shape, args: dict):
    from torch import nn

    return nn.GroupNorm(args["groups"], in_shape[0], eps=args["eps"])


def _elementwise_macs(in_shape: Shape, out_shape: Shape, args: dict) -> int:
    return prod(out_shape)


EPS = ArgSpec("eps", "float", 1e-5, min=0.0)

register(OpSpec(
    name="batchnorm",
    doc="Batch normalization over the channel dimension (1-D, 2-D or 3-D by input rank).",
    category="norm",
    positional=(),
    keywords=(EPS, ArgSpec("momentum", "float", 0.1, min=0.0, max=1.0)),
    infer=lambda s, a: s,
    params=lambda s, a: 2 * s[0],
    macs=_elementwise_macs,
    label=lambda a, i, o: "batch norm",
    build=_build_batchnorm,
))

register(OpSpec(
    name="layernorm",
    doc="Layer normalization over the channels at each position (over the features of a flat input).",
    category="norm",
    positional=(),
    keywords=(EPS,),
    infer=lambda s, a: s,
    params=lambda s, a: 2 * s[0],
    macs=_elementwise_macs,
    label=lambda a, i, o: "layer norm",
    build=_build_layernorm,
))

register(OpSpec(
    name="groupnorm",
    doc="Group normalization with the given number of channel groups.",
    category="norm",
    positional=(ArgSpec("groups", "int", min=1),),
    keywords=(EPS,),
    infer=_groupnorm_shape,
    params=lambda s, a: 2 * s[0],
    macs=_elementwise_macs,
    label=lambda a, i, o: f"group norm, {a['groups']}",
    build=_build_groupnorm,
    min_rank=2,
))
