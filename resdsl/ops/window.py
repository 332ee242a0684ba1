"""Swin Transformer (language v2, transformers): ``window_attention`` and ``patch_merge``
on channels-last maps ``[H, W, C]`` (torchvision's layout for Swin: ``permute 1, 2, 0``
after the patch convolution)."""

from __future__ import annotations

from ..shapes import format_shape
from .base import BOX, GLOBAL, MIXER, ArgSpec, OpError, OpSpec, Shape, TorchCall, Window, register
from .misc import REGULARIZER


def _channels_last(op: str, in_shape: Shape) -> None:
    if len(in_shape) != 3:
        raise OpError(f"{op} takes a channels-last map [H, W, C], but its input is {format_shape(in_shape)}",
                      hint="make a [C, H, W] map channels-last with 'permute 1, 2, 0'")


def _padded(size: int, window: int) -> int:
    return -(-size // window) * window  # torchvision pads the map to whole windows


def _window_attention_shape(in_shape: Shape, args: dict) -> Shape:
    _channels_last("window_attention", in_shape)
    heads, width = args["heads"], in_shape[2]
    if width % heads:
        divisors = [h for h in range(1, min(width, 64) + 1) if width % h == 0]
        raise OpError(f"{heads} heads do not divide the width {width} of the map",
                      hint=f"the heads must divide the width: e.g. {', '.join(map(str, divisors[-4:]))}",
                      arg="#0")
    if args["v2"] and args["window"] < 2:
        raise OpError("Swin V2's position bias needs a window of at least 2 (it scales the "
                      "offsets by window - 1)", hint="use window=8, as swin_v2_t", arg="window")
    if args["shift"] >= args["window"]:
        raise OpError(f"a shift of {args['shift']} is not less than the window ({args['window']})",
                      hint=f"Swin shifts by half a window: shift={args['window'] // 2}", arg="shift")
    return in_shape


def _window_attention_params(in_shape: Shape, args: dict) -> int:
    width = in_shape[2]
    heads = args["heads"]
    if args["v2"]:  # the logit scale and the continuous position bias MLP (2 -> 512 -> heads)
        return 4 * width * width + 4 * width + heads + 3 * 512 + 512 * heads
    table = (2 * args["window"] - 1) ** 2 * heads  # the relative position bias table
    return 4 * width * width + 4 * width + table


def _window_attention_macs(in_shape: Shape, out_shape: Shape, args: dict) -> int:
    # On the map padded to whole windows: the qkv and output projections (4 D^2 per
    # position), then QK^T and AV within each window of w^2 tokens (w^2 D per position
    # each), as torch.utils.flop_counter counts the matmuls.
    window, width = args["window"], in_shape[2]
    positions = _padded(in_shape[0], window) * _padded(in_shape[1], window)
    macs = 4 * positions * width * width + 2 * positions * window * window * width
    if args["v2"]:  # the position bias MLP on each of the (2w - 1)^2 relative offsets
        macs += (2 * window - 1) ** 2 * 512 * (2 + args["heads"])
    return macs


def _window_attention_code(c):
    return c.call("ShiftedWindowAttention", c.features(), c.arg("window"), c.arg("shift"), c.arg("heads"),
                  attention_dropout=c.kw("attention_dropout", 0.0), dropout=c.kw("dropout", 0.0),
                  v2=c.kw("v2", False))


def _window_attention_module(m) -> dict | None:
    """torchvision's ShiftedWindowAttention(V2) (square windows and shifts, both biases), or
    resdsl's own; the rebuilt module's state is compared key for key."""
    if hasattr(m, "window_size"):  # torchvision
        window, shift = list(m.window_size), list(m.shift_size)
        if len(set(window)) != 1 or len(set(shift)) != 1 or m.qkv.bias is None or m.proj.bias is None:
            return None
        found = {"heads": m.num_heads, "window": window[0], "shift": shift[0], "v2": hasattr(m, "logit_scale")}
    else:
        found = {"heads": m.heads, "window": m.window, "shift": m.shift, "v2": bool(m.v2)}
    return {**found, "attention_dropout": float(m.attention_dropout), "dropout": float(m.dropout)}


def _window_attention_label(args: dict, in_shape: Shape, out_shape: Shape) -> str:
    shifted = f", shift {args['shift']}" if args["shift"] else ""
    v2 = " (v2)" if args["v2"] else ""
    return f"{args['heads']}-head {args['window']}x{args['window']} window attention{v2}{shifted}"


register(OpSpec(
    name="window_attention",
    doc="Swin's (shifted) window multi-head self-attention with a relative position bias on a "
        "channels-last map [H, W, C] (torchvision's ShiftedWindowAttention).",
    category="weight",
    positional=(ArgSpec("heads", "int", min=1, doc="HEADS: must divide the width C"),),
    keywords=(
        ArgSpec("window", "int", 7, min=1, doc="the window's side, in positions"),
        ArgSpec("shift", "int", 0, min=0, doc="the cyclic shift (below the window; Swin: window // 2)"),
        ArgSpec("attention_dropout", "float", 0.0, min=0.0, max=1.0, doc="on the attention weights"),
        ArgSpec("dropout", "float", 0.0, min=0.0, max=1.0, doc="after the output projection"),
        ArgSpec("v2", "bool", False, doc="Swin V2: cosine attention, a continuous position bias MLP"),
    ),
    infer=_window_attention_shape,
    params=_window_attention_params,
    macs=_window_attention_macs,
    label=_window_attention_label,
    code=_window_attention_code,
    torch_aliases=("torchvision.models.swin_transformer.ShiftedWindowAttention",
                   "torchvision.models.swin_transformer.ShiftedWindowAttentionV2",
                   "resdsl.ops.torch_layers.ShiftedWindowAttention"),
    from_module=_window_attention_module,
    # A single op mixes the positions of a window (shifted windows chain them across the
    # map); declared global, as the analysis has no field for a window over [H, W, C].
    receptive_field=GLOBAL,
    nonlinear=False,
    diagram=MIXER,
    fresh_output=True,
    eval_args=(("attention_dropout", 0.0), ("dropout", 0.0)),
))


def _patch_merge_shape(in_shape: Shape, args: dict) -> Shape:
    _channels_last("patch_merge", in_shape)
    height, width, channels = in_shape
    return (-(-height // 2), -(-width // 2), 4 * channels)


def _patch_merge_call(call: TorchCall) -> dict | None:
    return {} if len(call.inputs) == 1 and not call.args and not call.kwargs else None


register(OpSpec(
    name="patch_merge",
    doc="Swin's patch merging on [H, W, C]: each 2x2 neighbourhood side by side, "
        "[ceil(H/2), ceil(W/2), 4C] (odd sizes padded; torchvision's _patch_merging_pad); no module.",
    category="reshape",
    positional=(),
    keywords=(),
    infer=_patch_merge_shape,
    label=lambda a, i, o: "2x2 patch merge",
    inline_code=lambda m: f"{m.helper('_patch_merging_pad')}({m.inputs[0]})",
    torch_calls=("torchvision.models.swin_transformer._patch_merging_pad",
                 "resdsl.ops.torch_layers._patch_merging_pad"),
    from_call=_patch_merge_call,
    receptive_field=Window((2, 2), (2, 2)),
    channels_last=True,  # the 2x2 window slides along H and W of [H, W, C]
    nonlinear=False,
    diagram=REGULARIZER,
    fresh_output=True,
))
