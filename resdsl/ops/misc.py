"""Shape and regularisation ops: identity, upsample, dropout, flatten, permute, chunk,
channel_shuffle."""

from __future__ import annotations

from math import prod

from ..shapes import format_shape
from .base import (
    BOX, GLOBAL, OMIT, POINTWISE, ArgSpec, Diagram, OpError, OpSpec, ReceptiveField, Shape, TorchCall,
    Window, register, sample_dim,
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
    eval_identity=True,
))

def _flatten_call(call: TorchCall) -> dict | None:
    # torch.flatten(x, 1) and x.view(N, -1) alike: whatever keeps the batch and flattens the rest
    return {} if call.shape == (prod(call.inputs[0]),) else None


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
    torch_calls=("torch.flatten", "Tensor.flatten", "Tensor.view", "Tensor.reshape", "torch.reshape"),
    from_call=_flatten_call,
))


def _expand_call(call: TorchCall) -> dict | None:
    sizes = call.args[0] if len(call.args) == 1 and isinstance(call.args[0], (tuple, list)) else call.args
    rank = len(call.inputs[0]) if len(call.inputs) == 1 else -1
    if len(sizes) != rank + 1 or call.shape != call.inputs[0] or call.kwargs:
        return None  # not the batch dim alone (more dims, or the sample's own grown)
    if not all(s == -1 or s == d for s, d in zip(sizes[1:], call.inputs[0])):
        return None
    return {"batch": True}


register(OpSpec(
    name="parameter",
    doc="A learnable tensor of a given shape, filled with one value (``[label:] parameter D1, ..., "
        "init=V``); a statement of the language, not called on an input.",
    category="io",
    positional=(),
    keywords=(),
    infer=lambda s, a: a["dims"][1:] if a.get("batch") else a["dims"],
    params=lambda s, a: prod(a["dims"]),
    label=lambda a, i, o: f"parameter {'x'.join(map(str, a['dims']))}",
    code=lambda c: c.call("_parameter", c.lit(c.args["dims"]), c.lit(c.args["init"]),
                          *([c.lit(c.args["std"])] if c.args.get("std") else [])),
    internal=True,
    source=True,
    batched=False,  # broadcasts as it is: torch aligns its dims to the right of the batched tensor
    receptive_field=POINTWISE, nonlinear=False, diagram=BOX,
    # ``token.expand(n, -1, -1)``: a batch=true parameter expanded to the batch, which the
    # merges reading it do by themselves (a call of a source op on its own tensor is that tensor)
    torch_calls=("Tensor.expand",),
    from_call=_expand_call,
))


# ---- v2: dims and channel groups ---------------------------------------------------------
def _permute_shape(in_shape: Shape, args: dict) -> Shape:
    """[D0, D1, ...] -> the dims in the order given (per-sample dims, 0-based)."""
    dims, rank = args["dims"], len(in_shape)
    if len(dims) != rank:
        raise OpError(
            f"permute needs {rank} dims for the input {format_shape(in_shape)}, got {len(dims)}",
            hint=f"write a permutation of 0..{rank - 1}, e.g. permute {_dims_text(_rotated(rank))}",
            arg=f"#{rank}" if len(dims) > rank else None,
        )
    seen: set[int] = set()
    for index, dim in enumerate(dims):
        if dim >= rank or dim in seen:
            what = f"dim {dim} is out of range" if dim >= rank else f"dim {dim} appears twice"
            raise OpError(
                f"{what}: the dims must be a permutation of 0..{rank - 1} "
                f"(the input {format_shape(in_shape)} has {rank} per-sample dims)",
                hint="each per-sample dim exactly once; the batch dim is not counted", arg=f"#{index}",
            )
        seen.add(dim)
    return tuple(in_shape[d] for d in dims)


def _dims_text(dims: tuple[int, ...]) -> str:
    """``1, 2, 0``: dims as a spec writes them."""
    return format_shape(dims).strip("[]")


def _rotated(rank: int) -> tuple[int, ...]:
    return tuple(range(1, rank)) + (0,) if rank > 1 else (0,)


def _permute_code(c):
    # torch's dims count the batch dim: per-sample dim d is d + 1.
    return c.call("Permute", c.lit((0, *(d + 1 for d in c.args["dims"]))))


def _permute_call(call: TorchCall) -> dict | None:
    dims = call.args[0] if len(call.args) == 1 and isinstance(call.args[0], (tuple, list)) else call.args
    dims = dims or call.kwargs.get("dims", ())
    if not dims or dims[0] != 0:
        return None  # the batch dim moves: not a per-sample permutation
    return {"dims": tuple(d - 1 for d in dims[1:])}


def _permute_module(module) -> dict | None:
    return _permute_call(TorchCall("Permute", (tuple(module.dims),), {}, (), None))


register(OpSpec(
    name="permute",
    doc="Reorders the per-sample dims (a module, as torchvision.ops.misc.Permute): "
        "permute 1, 2, 0 makes [C, H, W] channels-last [H, W, C].",
    category="reshape",
    positional=(ArgSpec("dims", "int", min=0, variadic=True, doc="D0, D1, ...: per-sample dims, 0-based"),),
    keywords=(),
    infer=_permute_shape,
    label=lambda a, i, o: "permute " + _dims_text(a["dims"]),
    code=_permute_code,
    # Positions mix nothing; the analysis follows each spatial dim to its new place.
    receptive_field=POINTWISE, nonlinear=False, diagram=SILENT,
    moves_dims=lambda s, a: a["dims"],
    torch_aliases=("torchvision.ops.misc.Permute", "resdsl.ops.torch_layers.Permute"),
    from_module=_permute_module,
    torch_calls=("Tensor.permute", "torch.permute"),
    from_call=_permute_call,
))


def _chunk_shape(in_shape: Shape, args: dict) -> Shape:
    count, index, channels = args["chunks"], args["index"], in_shape[0]
    if channels % count:
        raise OpError(f"{count} chunks do not divide the {channels} channels into equal parts",
                      hint="the number of chunks must divide the channel count", arg="#0")
    if index >= count:
        raise OpError(f"chunk {index} of {count}: the index must be below {count} (0-based)",
                      hint=f"write an index in 0..{count - 1}", arg="#1")
    return (channels // count, *in_shape[1:])


def _chunk_call(call: TorchCall) -> dict | None:
    dim = sample_dim(call.arg(1, "dim", 0), len(call.inputs[0]))
    if dim != 0 or call.index is None:
        return None
    return {"chunks": call.arg(0, "chunks"), "index": call.index}


register(OpSpec(
    name="chunk",
    doc="The I-th (0-based) of N equal chunks along the channels; no module (x.chunk(N, 1)[I]).",
    category="reshape",
    positional=(ArgSpec("chunks", "int", min=1, doc="N"), ArgSpec("index", "int", min=0, doc="I")),
    keywords=(),
    infer=_chunk_shape,
    label=lambda a, i, o: f"chunk {a['index']} of {a['chunks']}",
    # A view of its input (not fresh): an in-place op after it would change the input.
    inline_code=lambda m: f"{m.inputs[0]}.chunk({m.lit(m.args['chunks'])}, 1)[{m.lit(m.args['index'])}]",
    receptive_field=POINTWISE, nonlinear=False, diagram=REGULARIZER,
    torch_calls=("Tensor.chunk", "torch.chunk"),
    from_call=_chunk_call,
))


def _shuffle_shape(in_shape: Shape, args: dict) -> Shape:
    if in_shape[0] % args["groups"]:
        raise OpError(f"groups={args['groups']} does not divide the {in_shape[0]} channels",
                      hint="choose a number of groups that divides the channel count", arg="#0")
    return in_shape


register(OpSpec(
    name="channel_shuffle",
    doc="ShuffleNet's channel shuffle: [G, C/G] channel groups transposed to [C/G, G]; no module.",
    category="reshape",
    positional=(ArgSpec("groups", "int", min=1),),
    keywords=(),
    infer=_shuffle_shape,
    label=lambda a, i, o: f"channel shuffle, {a['groups']}",
    inline_code=lambda m: f"{m.helper('_channel_shuffle')}({m.inputs[0]}, {m.lit(m.args['groups'])})",
    receptive_field=POINTWISE, nonlinear=False, diagram=REGULARIZER,
    fresh_output=True,  # a contiguous copy that its backward does not read
    torch_calls=("torchvision.models.shufflenetv2.channel_shuffle", "resdsl.ops.torch_layers._channel_shuffle"),
    from_call=lambda call: {"groups": call.arg(0, "groups")},
))
