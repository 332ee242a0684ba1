"""Weight layers: conv, upconv (transposed conv), linear."""

from __future__ import annotations

from math import ceil, prod

from ..shapes import format_dims as _dims
from .base import BOX, POINTWISE, ArgSpec, OpError, OpSpec, ReceptiveField, Shape, Window, register


def same_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """torch's ``padding="same"`` per dimension: ``(left, right)``, the odd one on the right."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((t // 2, t - t // 2) for t in totals)


def _conv_out(in_shape: Shape, args: dict) -> Shape:
    channels, spatial = in_shape[0], in_shape[1:]
    groups, out = args["groups"], args["out_channels"]
    _check_groups(channels, out, groups)
    if args["pad"] == "same":
        if any(s != 1 for s in args["stride"]):
            raise OpError(
                f"pad=same needs stride 1, not stride {_dims(args['stride'])} (torch refuses "
                "padding='same' for strided convolutions)",
                hint="drop the stride, or pad explicitly (e.g. pad=kernel//2)", arg="pad",
            )
        return (out, *spatial)  # any size: torch pads d(k-1) in all, the odd one on the right
    sizes = []
    for size, k, s, p, d in zip(spatial, args["kernel"], args["stride"], args["pad"], args["dilation"]):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise OpError(
                f"kernel {_dims(args['kernel'])}"
                f"{' (dilated)' if d > 1 else ''} is larger than the padded input "
                f"{_dims(spatial)} (pad {_dims(args['pad'])})",
                hint="use a smaller kernel, more padding, or a larger input", arg="#0",
            )
        sizes.append((size + 2 * p - span) // s + 1)
    return (out, *sizes)


def _check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    for what, count in (("input", in_channels), ("output", out_channels)):
        if count % groups:
            raise OpError(
                f"groups={groups} does not divide the {what} channels ({count})",
                hint=f"groups must divide both channel counts ({in_channels} in, {out_channels} out)",
                arg="groups",
            )


def _conv_params(in_shape: Shape, args: dict) -> int:
    weight = args["out_channels"] * (in_shape[0] // args["groups"]) * prod(args["kernel"])
    return weight + (args["out_channels"] if args["bias"] else 0)


def _conv_macs(in_shape: Shape, out_shape: Shape, args: dict) -> int:
    return prod(out_shape) * (in_shape[0] // args["groups"]) * prod(args["kernel"])


def _conv_label(args: dict, in_shape: Shape, out_shape: Shape) -> str:
    text = f"{_dims(args['kernel'])} conv, {args['out_channels']}"
    if any(s > 1 for s in args["stride"]):
        text += ", /" + _dims(args["stride"]) if len(set(args["stride"])) > 1 else f", /{args['stride'][0]}"
    if args["groups"] > 1:
        text += f", g{args['groups']}"
    return text


def _conv_field(in_shape: Shape, out_shape: Shape, args: dict) -> Window:
    dilated = tuple((k - 1) * d + 1 for k, d in zip(args["kernel"], args["dilation"]))
    return Window(dilated, args["stride"])


def _unpadded(in_shape: Shape, args: dict) -> bool:
    """No padding reaches the input (a 1x1 conv, pad=0): a per-channel map before the conv
    then commutes with it exactly, borders included."""
    if args["pad"] == "same":
        return all(d * (k - 1) == 0 for k, d in zip(args["kernel"], args["dilation"]))
    return all(p == 0 for p in args["pad"])


def _conv_code(c):
    # pad=same is written as torch's word (and so recorded: the code depends on it).
    pad = c.lit(c.args["pad"]) if c.value("pad") == "same" else c.kw("pad", 0)
    return c.call(
        f"nn.Conv{c.rank}d", c.channels(), c.arg("out_channels"), kernel_size=c.arg("kernel"),
        stride=c.kw("stride", 1), padding=pad, dilation=c.kw("dilation", 1),
        groups=c.kw("groups", 1), bias=c.kw("bias", True),
    )


register(OpSpec(
    name="conv",
    doc="Convolution over the input's 1, 2 or 3 spatial dimensions.",
    category="weight",
    positional=(
        ArgSpec("kernel", "tuple", min=1, doc="kernel size: 3, 3x3, 1x7, 3x3x3"),
        ArgSpec("out_channels", "int", min=1),
    ),
    keywords=(
        ArgSpec("stride", "tuple", 1, min=1),
        ArgSpec("pad", "tuple", lambda a: tuple(k // 2 for k in a["kernel"]), min=0, doc="kernel//2",
                choices=("same",)),  # pad=same: torch's padding="same" (stride 1)
        ArgSpec("dilation", "tuple", 1, min=1),
        ArgSpec("groups", "int", 1, min=1),
        ArgSpec("bias", "bool", True),
    ),
    infer=_conv_out,
    params=_conv_params,
    macs=_conv_macs,
    label=_conv_label,
    code=_conv_code,
    min_rank=2,
    receptive_field=_conv_field,
    nonlinear=False,
    diagram=BOX,
    fresh_output=True,
    width_args=("out_channels",),
    absorbs_after=lambda s, a: True,
    absorbs_before=_unpadded,
    fast_channels_last=True,
    onednn_conv=True,
))


def _upconv_out(in_shape: Shape, args: dict) -> Shape:
    sizes = []
    for size, k, s, p in zip(in_shape[1:], args["kernel"], args["stride"], args["pad"]):
        out = (size - 1) * s - 2 * p + k
        if out <= 0:
            raise OpError(f"upconv output size would be {out}", hint="reduce 'pad'", arg="pad")
        sizes.append(out)
    return (args["out_channels"], *sizes)


def _upconv_params(in_shape: Shape, args: dict) -> int:
    return in_shape[0] * args["out_channels"] * prod(args["kernel"]) + (
        args["out_channels"] if args["bias"] else 0
    )


def _upconv_macs(in_shape: Shape, out_shape: Shape, args: dict) -> int:
    return prod(in_shape) * args["out_channels"] * prod(args["kernel"])


def _upconv_field(in_shape: Shape, out_shape: Shape, args: dict) -> Window:
    # An output position sees ceil(k / s) input positions; outputs are 1/s input positions apart.
    taps = tuple(ceil(k / s) for k, s in zip(args["kernel"], args["stride"]))
    return Window(taps, (1,) * len(taps), upscale=args["stride"])


def _upconv_code(c):
    return c.call(
        f"nn.ConvTranspose{c.rank}d", c.channels(), c.arg("out_channels"), kernel_size=c.arg("kernel"),
        stride=c.kw("stride", 1), padding=c.kw("pad", 0), bias=c.kw("bias", True),
    )


register(OpSpec(
    name="upconv",
    doc="Transposed convolution (learned upsampling), stride = kernel by default.",
    category="weight",
    positional=(ArgSpec("kernel", "tuple", min=1), ArgSpec("out_channels", "int", min=1)),
    keywords=(
        ArgSpec("stride", "tuple", lambda a: a["kernel"], min=1, doc="kernel", same_as="kernel"),
        ArgSpec("pad", "tuple", 0, min=0),
        ArgSpec("bias", "bool", True),
    ),
    infer=_upconv_out,
    params=_upconv_params,
    macs=_upconv_macs,
    label=lambda a, i, o: f"{_dims(a['kernel'])} up-conv, {a['out_channels']}",
    code=_upconv_code,
    min_rank=2,
    receptive_field=_upconv_field,
    nonlinear=False,
    diagram=BOX,
    fresh_output=True,
    width_args=("out_channels",),
    fast_channels_last=True,
))


def _linear_field(in_shape: Shape, out_shape: Shape, args: dict) -> ReceptiveField:
    # Over a spatial tensor [C, ..., W] the layer mixes every position of the last dimension.
    rank = len(in_shape) - 1
    if rank == 0:
        return POINTWISE
    return Window((1,) * (rank - 1) + (in_shape[-1],), (1,) * rank)


def _linear_code(c):
    return c.call("nn.Linear", c.features(), c.arg("out_features"), bias=c.kw("bias", True))


register(OpSpec(
    name="linear",
    doc="Fully connected layer over the last dimension.",
    category="weight",
    positional=(ArgSpec("out_features", "int", min=1),),
    keywords=(ArgSpec("bias", "bool", True),
              ArgSpec("tie", "tie", None, doc="LABEL: share the weight of that embedding or linear")),
    infer=lambda s, a: (*s[:-1], a["out_features"]),
    # a tied weight is the other layer's tensor, counted there (as torch counts a shared one)
    params=lambda s, a: (0 if a.get("tie") else s[-1] * a["out_features"]) + (a["out_features"] if a["bias"] else 0),
    weight_shape=lambda s, a: (a["out_features"], s[-1]),
    macs=lambda i, o, a: prod(i) * a["out_features"],
    label=lambda a, i, o: f"fc {a['out_features']}",
    code=_linear_code,
    receptive_field=_linear_field,
    nonlinear=False,
    diagram=BOX,
    fresh_output=True,
    width_args=("out_features",),
    # Over a flat input only: on [C, ..., L] a norm's channels are not the features.
    absorbs_after=lambda s, a: len(s) == 1 and not a.get("tie"),
    absorbs_before=lambda s, a: len(s) == 1 and not a.get("tie"),
    onednn_linear=True,
))
