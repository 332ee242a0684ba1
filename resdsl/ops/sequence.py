"""Token sequences (language v2, transformers): ``tokens``, ``select`` and ``attention``.

A sequence of N tokens of width D is the per-sample shape ``[N, D]`` (torch's
``batch_first`` layout ``[B, N, D]``): ``linear`` and ``layernorm over=last`` act on
each token, ``attention`` mixes the tokens.
"""

from __future__ import annotations

from math import prod

from ..shapes import format_shape
from .base import (
    BOX, GLOBAL, MIXER, POINTWISE, ArgSpec, OpError, OpSpec, Shape, TensorRef, TorchCall, register, sample_dim,
)
from .misc import REGULARIZER


def _tokens_shape(in_shape: Shape, args: dict) -> Shape:
    if len(in_shape) < 2:
        raise OpError(f"tokens needs a map [C, *spatial] to make a sequence of, but the input "
                      f"{format_shape(in_shape)} is flat",
                      hint="apply tokens to a [C, H, W] map (e.g. after a patch convolution)")
    return (prod(in_shape[1:]), in_shape[0])


def _tokens_dims(in_shape: Shape, args: dict) -> tuple[int | None, ...]:
    # Token k is spatial position k: one input dim when there is one, else a merge of them.
    return (1 if len(in_shape) == 2 else None, 0)


# x.flatten(2).transpose(1, 2), x.reshape(n, c, h * w).permute(0, 2, 1), ...: a call that
# flattens the positions, then one that swaps the two dims left (a chain: see TorchCall.before)
_FLATTENS = ("torch.flatten", "Tensor.flatten", "Tensor.reshape", "torch.reshape", "Tensor.view")
_SWAPS = ("Tensor.permute", "torch.permute", "Tensor.transpose", "torch.transpose")


def _swaps(call: TorchCall) -> bool:
    """Whether ``call`` exchanges the two per-sample dims of a [C, N] tensor (the batch stays)."""
    if call.name.endswith("transpose"):
        dims = [call.arg(0, "dim0"), call.arg(1, "dim1")]
        return sorted(sample_dim(d, 2) if sample_dim(d, 2) is not None else -1 for d in dims) == [0, 1]
    dims = call.args[0] if len(call.args) == 1 and isinstance(call.args[0], (tuple, list)) else call.args
    dims = dims or call.kwargs.get("dims", ())
    return len(dims) == 3 and [sample_dim(d, 2) for d in dims] == [None, 1, 0] and dims[0] in (0, -3)


def _tokens_call(call: TorchCall) -> dict | None:
    """[C, *spatial] -> [C, prod(spatial)] (a reshape is row-major: its output shape is its
    element order), then the two dims swapped: the positions in order, each a token."""
    before = call.before
    if before is None or len(before.inputs) != 1 or len(before.inputs[0]) < 2:
        return None
    channels, positions = before.inputs[0][0], prod(before.inputs[0][1:])
    if before.shape != (channels, positions) or not _swaps(call) or call.shape != (positions, channels):
        return None
    return {}


register(OpSpec(
    name="tokens",
    doc="A map [C, *spatial] as a sequence of its positions, [prod(spatial), C] "
        "(x.flatten(2).transpose(1, 2)); no module.",
    category="reshape",
    positional=(),
    keywords=(),
    infer=_tokens_shape,
    label=lambda a, i, o: "tokens",
    # A view of its input (not fresh): an in-place op after it would change the input.
    inline_code=lambda m: f"{m.inputs[0]}.flatten(2).transpose(1, 2)",
    receptive_field=POINTWISE, nonlinear=False, diagram=REGULARIZER,
    moves_dims=_tokens_dims,
    torch_calls=tuple(f"{first}+{second}" for first in _FLATTENS for second in _SWAPS),
    from_call=_tokens_call,
))


def _sequence_rank(op: str, in_shape: Shape) -> None:
    if len(in_shape) != 2:
        raise OpError(f"{op} takes a token sequence [N, D], but its input is {format_shape(in_shape)}",
                      hint="make tokens of a map with 'tokens' (a [C, H, W] map gives [H * W, C])")


def _select_shape(in_shape: Shape, args: dict) -> Shape:
    _sequence_rank("select", in_shape)
    if not -in_shape[0] <= args["index"] < in_shape[0]:
        raise OpError(f"token {args['index']} of a sequence of {in_shape[0]}: the index must be in "
                      f"{-in_shape[0]}..{in_shape[0] - 1} (0-based; -1 is the last token)",
                      hint=f"write an index in 0..{in_shape[0] - 1}, or -1 for the last", arg="#0")
    return in_shape[1:]


def _select_call(call: TorchCall) -> dict | None:
    """``x[:, I]`` of a sequence [N, D]."""
    key = call.args[0] if len(call.args) == 1 and len(call.inputs) == 1 else None
    if (not isinstance(key, tuple) or len(key) != 2 or key[0] != slice(None)
            or not isinstance(key[1], int) or isinstance(key[1], bool) or len(call.inputs[0]) != 2):
        return None
    return {"index": key[1]}


register(OpSpec(
    name="select",
    doc="Token I (0-based; -1 the last) of a sequence [N, D]: [D] (x[:, I], ViT's class token); no module.",
    category="reshape",
    positional=(ArgSpec("index", "int", doc="I"),),
    keywords=(),
    infer=_select_shape,
    label=lambda a, i, o: f"token {a['index']}",
    inline_code=lambda m: f"{m.inputs[0]}[:, {m.lit(m.args['index'])}]",
    receptive_field=POINTWISE, nonlinear=False, diagram=REGULARIZER,
    moves_dims=lambda s, a: (1,),  # what is left of a token is its features
    torch_calls=("_operator.getitem",),
    from_call=_select_call,
))


def _attention_shape(in_shape: Shape, args: dict) -> Shape:
    _sequence_rank("attention", in_shape)
    heads, width = args["heads"], in_shape[1]
    if width % heads:
        divisors = [h for h in range(1, min(width, 64) + 1) if width % h == 0]
        raise OpError(f"{heads} heads do not divide the width {width} of the tokens",
                      hint=f"the heads must divide the width: e.g. {', '.join(map(str, divisors[-4:]))}",
                      arg="#0")
    return in_shape


def _attention_params(in_shape: Shape, args: dict) -> int:
    width = in_shape[1]
    return 4 * width * width + (4 * width if args["bias"] else 0)


def _attention_macs(in_shape: Shape, out_shape: Shape, args: dict) -> int:
    # The q, k, v and output projections (4 N D^2), then QK^T and AV (N^2 D each), as
    # torch.utils.flop_counter counts them (bias additions and the softmax are not counted).
    tokens, width = in_shape
    return 4 * tokens * width * width + 2 * tokens * tokens * width


def _attention_code(c):
    return c.call("nn.MultiheadAttention", c.features(), c.arg("heads"), dropout=c.kw("dropout", 0.0),
                  bias=c.kw("bias", True), batch_first=c.lit(True))


def _attention_call(m) -> str:
    x = m.inputs[0]
    # torch's own causal semantics: the float mask of generate_square_subsequent_mask
    mask = f", attn_mask={m.helper('_causal_mask')}({x})" if m.args["causal"] else ""
    return f"{m.module}({x}, {x}, {x}, need_weights=False{mask})[0]"


def _attention_module(m) -> dict | None:
    """nn.MultiheadAttention as this op builds it: batch first, keys and values of the
    queries' width, no extra key/value bias, no zero attention."""
    if (not getattr(m, "batch_first", False) or not getattr(m, "_qkv_same_embed_dim", False)
            or getattr(m, "bias_k", None) is not None or getattr(m, "add_zero_attn", True)):
        return None
    return {"heads": m.num_heads, "dropout": float(m.dropout), "bias": m.in_proj_bias is not None}


def _attention_module_call(call: TorchCall) -> dict | None:
    """Self-attention: ``m(x, x, x[, need_weights=False])[0]`` (one tensor three times, no mask)."""
    if (call.index != 0 or call.distinct != (0, 0, 0) or call.args != (TensorRef(1), TensorRef(2))
            or set(call.kwargs) - {"need_weights"}):
        return None
    return {"causal": False}


def _attention_label(args: dict, in_shape: Shape, out_shape: Shape) -> str:
    return f"{args['heads']}-head attention" + (", causal" if args["causal"] else "")


register(OpSpec(
    name="attention",
    doc="Multi-head self-attention over a token sequence [N, D] (nn.MultiheadAttention, "
        "batch_first); optionally causal.",
    category="weight",
    positional=(ArgSpec("heads", "int", min=1, doc="HEADS: must divide the width D"),),
    keywords=(
        ArgSpec("dropout", "float", 0.0, min=0.0, max=1.0, doc="on the attention weights"),
        ArgSpec("causal", "bool", False, doc="token i attends to tokens 0..i only"),
        ArgSpec("bias", "bool", True),
    ),
    infer=_attention_shape,
    params=_attention_params,
    macs=_attention_macs,
    label=_attention_label,
    code=_attention_code,
    call=_attention_call,
    torch_aliases=("torch.nn.MultiheadAttention",),
    from_module=_attention_module,
    from_module_call=_attention_module_call,
    receptive_field=GLOBAL,  # every token attends to every (earlier) token
    nonlinear=False,
    diagram=MIXER,
    fresh_output=True,
    eval_args=(("dropout", 0.0),),
))


# ---- token ids: embeddings (language v2, a decoder-only language model) ---------------
def _embedding_weight(in_shape: Shape, args: dict) -> Shape:
    return (args["num_embeddings"], args["embedding_dim"])


register(OpSpec(
    name="embedding",
    doc="A lookup table (nn.Embedding): token ids [*] (an int input) -> [*, DIM], row i for id i.",
    category="weight",
    positional=(ArgSpec("num_embeddings", "int", min=1, doc="VOCAB: ids are below it"),
                ArgSpec("embedding_dim", "int", min=1, doc="DIM")),
    keywords=(),
    infer=lambda s, a: (*s, a["embedding_dim"]),
    params=lambda s, a: a["num_embeddings"] * a["embedding_dim"],
    label=lambda a, i, o: f"embedding {a['num_embeddings']}, {a['embedding_dim']}",
    code=lambda c: c.call("nn.Embedding", c.arg("num_embeddings"), c.arg("embedding_dim")),
    receptive_field=POINTWISE,  # each token's row depends on that token's id only
    nonlinear=False,
    diagram=BOX,
    moves_dims=lambda s, a: (*range(len(s)), None),  # a new last dim: the features
    fresh_output=True,
    width_args=("embedding_dim",),
    reads="ids",
    id_bound=lambda a: a["num_embeddings"],
    weight_shape=_embedding_weight,
))


def _positions_shape(in_shape: Shape, args: dict) -> Shape:
    length, most = in_shape[0], args["num_embeddings"]
    if length > most:
        raise OpError(f"a sequence of {length} tokens is longer than the {most} positions embedded",
                      hint=f"embed at least {length} positions, or shorten the sequence", arg="#0")
    return (length, args["embedding_dim"])


def _positions_call(m) -> str:
    x = m.inputs[0]
    return f"{m.module}(torch.arange({x}.shape[1], device={x}.device))"


register(OpSpec(
    name="positions",
    doc="Learned position embeddings (nn.Embedding(MAX, DIM) of 0..N-1, GPT-2's wpe) for a "
        "sequence [N, ...]: [N, DIM], without a batch dim, to add to the token embeddings.",
    category="weight",
    positional=(ArgSpec("num_embeddings", "int", min=1, doc="MAX: the longest sequence"),
                ArgSpec("embedding_dim", "int", min=1, doc="DIM")),
    keywords=(),
    infer=_positions_shape,
    params=lambda s, a: a["num_embeddings"] * a["embedding_dim"],
    label=lambda a, i, o: f"positions {a['num_embeddings']}, {a['embedding_dim']}",
    code=lambda c: c.call("nn.Embedding", c.arg("num_embeddings"), c.arg("embedding_dim")),
    call=_positions_call,  # reads only the sequence length of its input
    receptive_field=POINTWISE,
    nonlinear=False,
    diagram=BOX,
    moves_dims=lambda s, a: (0, None),
    batched=False,  # one [N, DIM] for the whole batch: 'add' broadcasts it
    reads="any",
    shape_only=True,
    weight_shape=_embedding_weight,
))
