"""Pooling: maxpool, avgpool, adaptive_avgpool."""

from __future__ import annotations

from math import prod

from fractions import Fraction

from ..shapes import format_dims as _dims
from .base import BOX, GLOBAL, ArgSpec, OpError, OpSpec, ReceptiveField, Shape, TorchCall, Window, register


def _avgpool_out(in_shape: Shape, args: dict) -> Shape:
    # torch's avg_pool3d checks the input against the kernel before padding (2-D and 1-D
    # pad first), so a 3-D input smaller than the kernel cannot run even when padded.
    if len(in_shape) == 4 and any(size < k for size, k in zip(in_shape[1:], args["kernel"])):
        raise OpError(
            f"3-D avgpool needs an input at least as large as the kernel {_dims(args['kernel'])}, "
            f"got {_dims(in_shape[1:])} (torch pads after this check)",
            hint="use a smaller kernel or a larger input", arg="#0",
        )
    return _pool_out(in_shape, args)


def ceil_size(size: int, k: int, s: int, p: int) -> int:
    """torch's ceil_mode output size: windows may run past the end, but the last one must
    start inside the input or its left padding (pooling_output_shape in ATen)."""
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_out(in_shape: Shape, args: dict) -> Shape:
    sizes = []
    for size, k, s, p in zip(in_shape[1:], args["kernel"], args["stride"], args["pad"]):
        if 2 * p > k:
            raise OpError(f"pad {_dims(args['pad'])} is more than half the kernel {_dims(args['kernel'])}",
                          hint="pooling pads at most half the kernel", arg="pad")
        if args.get("ceil"):  # a recipe built by hand may leave it out
            out = ceil_size(size, k, s, p)
            if out < 1:
                raise OpError(
                    f"kernel {_dims(args['kernel'])} leaves no window on the padded input "
                    f"{_dims(in_shape[1:])} even with ceil=true",
                    hint="use a smaller kernel or a larger input", arg="#0",
                )
            sizes.append(out)
            continue
        if size + 2 * p < k:
            raise OpError(
                f"kernel {_dims(args['kernel'])} is larger than the padded input {_dims(in_shape[1:])}",
                hint="use a smaller kernel or a larger input", arg="#0",
            )
        sizes.append((size + 2 * p - k) // s + 1)
    return (in_shape[0], *sizes)


def _pool_code(kind: str):
    def code(c):
        # torch's pooling stride defaults to the kernel, as ours does.
        return c.call(f"nn.{kind}{c.rank}d", c.arg("kernel"), stride=c.kw("stride", c.args["kernel"]),
                      padding=c.kw("pad", 0), ceil_mode=c.kw("ceil", False))

    return code


def _pool_call(kind: str):
    """``F.max_pool2d(x, 3, stride=2, padding=1)``: the arguments torch's module has
    (no dilation, no return_indices; avg: count_include_pad and no divisor override)."""
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices") if kind == "max" \
        else ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

    def from_call(call: TorchCall) -> dict | None:
        given = {name: call.arg(k, name) for k, name in enumerate(names)}
        extra = {"dilation": (None, 1), "return_indices": (None, False), "count_include_pad": (None, True),
                 "divisor_override": (None,)}
        if any(given.get(name) not in allowed for name, allowed in extra.items() if name in names):
            return None
        args = {"kernel": given["kernel_size"], "pad": given["padding"] or 0, "ceil": bool(given["ceil_mode"])}
        if given["stride"] not in (None, [], ()):  # torch: None or [] is the kernel
            args["stride"] = given["stride"]
        return args

    return from_call


def _pool_label(word: str):
    def label(args: dict, in_shape: Shape, out_shape: Shape) -> str:
        text = f"{_dims(args['kernel'])} {word} pool"
        if any(s > 1 for s in args["stride"]):
            text += f", /{args['stride'][0]}" if len(set(args["stride"])) == 1 else f", /{_dims(args['stride'])}"
        return text

    return label


for _name, _class, _word, _infer in (("maxpool", "MaxPool", "max", _pool_out),
                                     ("avgpool", "AvgPool", "avg", _avgpool_out)):
    register(OpSpec(
        name=_name,
        doc=f"{_word.capitalize()} pooling; stride defaults to the kernel.",
        category="pool",
        positional=(ArgSpec("kernel", "tuple", min=1),),
        keywords=(
            ArgSpec("stride", "tuple", lambda a: a["kernel"], min=1, doc="kernel", same_as="kernel"),
            ArgSpec("pad", "tuple", 0, min=0),
            ArgSpec("ceil", "bool", False, doc="torch's ceil_mode: round the output size up"),
        ),
        infer=_infer,
        macs=lambda i, o, a: prod(o) * prod(a["kernel"]),
        label=_pool_label(_word),
        code=_pool_code(_class),
        torch_calls=tuple(f"torch.nn.functional.{_word}_pool{r}d" for r in (1, 2, 3)),
        from_call=_pool_call(_word),
        min_rank=2,
        receptive_field=lambda i, o, a: Window(a["kernel"], a["stride"]),
        nonlinear=False,  # max pooling is piecewise linear, but not an activation function
        diagram=BOX,
    ))


def _adaptive_field(in_shape: Shape, out_shape: Shape, args: dict) -> ReceptiveField:
    if all(o == 1 for o in args["size"]):
        return GLOBAL
    # torch's adaptive windows: at most ceil(n / o) wide, n / o apart.
    spatial = in_shape[1:]
    return Window(tuple(-(-n // o) for n, o in zip(spatial, args["size"])),
                  tuple(Fraction(n, o) for n, o in zip(spatial, args["size"])))


def _adaptive_call(call: TorchCall) -> dict | list | None:
    """``F.adaptive_avg_pool2d(x, 1)``; ``x.mean([2, 3])`` (every spatial dim) is the global
    pool then a flatten, or the pool alone with ``keepdim=True``."""
    rank = len(call.inputs[0]) - 1
    if call.name.startswith("torch.nn.functional."):
        size = call.arg(0, "output_size")
        return {"size": size} if size is not None else None
    dims = call.arg(0, "dim")
    dims = [dims] if isinstance(dims, int) else list(dims or ())
    spatial = sorted(d + rank + 1 if d < 0 else d for d in dims)
    if rank == 0 or spatial != list(range(2, rank + 2)) or call.kwargs.get("dtype") is not None:
        return None
    if call.arg(1, "keepdim", False):
        return {"size": 1}
    return [("adaptive_avgpool", {"size": 1}), ("flatten", {})]


register(OpSpec(
    name="adaptive_avgpool",
    doc="Average pooling to a fixed output size (1 = global average pooling).",
    category="pool",
    positional=(ArgSpec("size", "tuple", min=1),),
    keywords=(),
    infer=lambda s, a: (s[0], *a["size"]),
    macs=lambda i, o, a: prod(i),
    label=lambda a, i, o: "avg pool" if all(d == 1 for d in a["size"]) else f"adaptive avg pool {_dims(a['size'])}",
    code=lambda c: c.call(f"nn.AdaptiveAvgPool{c.rank}d", c.arg("size")),
    torch_calls=("torch.nn.functional.adaptive_avg_pool1d", "torch.nn.functional.adaptive_avg_pool2d",
                 "torch.nn.functional.adaptive_avg_pool3d", "Tensor.mean", "torch.mean"),
    from_call=_adaptive_call,
    min_rank=2,
    receptive_field=_adaptive_field,
    nonlinear=False,
    diagram=BOX,
))
