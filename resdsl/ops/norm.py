"""Normalization layers: batchnorm, layernorm (over channels), groupnorm."""

from __future__ import annotations

from math import prod

from ..shapes import format_shape
from .base import ANNOTATION, POINTWISE, ArgSpec, OpError, OpSpec, Shape, register


def _batchnorm_code(c):
    rank = max(c.rank, 1)  # [C] and [C, L] both use BatchNorm1d
    return c.call(f"nn.BatchNorm{rank}d", c.channels(), eps=c.kw("eps", 1e-5), momentum=c.kw("momentum", 0.1))


def _layernorm_code(c):
    if c.args.get("over") == "last":  # nn.LayerNorm as torch has it: over the last dim
        return c.call("nn.LayerNorm", c.features(), eps=c.kw("eps", 1e-5))
    # Flat input: over its features; otherwise over the channels at each position.
    callee = "nn.LayerNorm" if c.rank == 0 else "ChannelLayerNorm"
    return c.call(callee, c.channels(), eps=c.kw("eps", 1e-5))


def _normalised(shape: Shape, args: dict) -> int:
    """The size of the dim a layernorm normalises (its weight's and bias's length)."""
    return shape[-1] if args.get("over") == "last" else shape[0]  # a recipe may leave it out


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
            f"{format_shape(in_shape)}, which always normalizes to 0",
            hint="use fewer groups, or normalize before the spatial size shrinks to 1", arg="#0",
        )
    return in_shape


def _groupnorm_code(c):
    return c.call("nn.GroupNorm", c.arg("groups"), c.channels(), eps=c.kw("eps", 1e-5))


def _elementwise_macs(in_shape: Shape, out_shape: Shape, args: dict) -> int:
    return prod(out_shape)


EPS = ArgSpec("eps", "float", 1e-5, min=0.0)

# Norms are POINTWISE for the receptive field: it counts the positions whose values an
# output is computed from, not the statistics (groupnorm's span the map, batchnorm's
# the batch in training), as the receptive-field literature does.

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
    code=_batchnorm_code,
    receptive_field=POINTWISE, nonlinear=False, diagram=ANNOTATION,
    zero_init_norm=True,  # torchvision's zero_init_residual: the last BN of each block
    fresh_output=True,
    affine_eval=True,  # running statistics: folded into a neighbouring conv or linear
))

register(OpSpec(
    name="layernorm",
    doc="Layer normalization over the channels at each position (over=channels, also the features "
        "of a flat input) or over the last dim (over=last, nn.LayerNorm on channels-last tensors).",
    category="norm",
    positional=(),
    keywords=(EPS, ArgSpec("over", "enum", "channels", choices=("channels", "last"),
                           doc="the dim normalised: channels (dim 0) or the last")),
    infer=lambda s, a: s,
    params=lambda s, a: 2 * _normalised(s, a),
    macs=_elementwise_macs,
    label=lambda a, i, o: "layer norm",
    code=_layernorm_code,
    # ConvNeXt's LayerNorm2d is our channel layer norm (permute, normalise, permute back)
    torch_aliases=("torchvision.models.convnext.LayerNorm2d",),
    receptive_field=POINTWISE, nonlinear=False, diagram=ANNOTATION,
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
    code=_groupnorm_code,
    min_rank=2,
    receptive_field=POINTWISE, nonlinear=False, diagram=ANNOTATION,
    fresh_output=True,
))
