"""Ops resdsl makes itself: the input, residual merges, long skips, option-A shortcuts.

They are not callable by name from a spec (``add LABEL`` and friends are statements),
but live in the catalogue so every back end finds every op in one place.
"""

from __future__ import annotations

from math import prod

from .base import BOX, POINTWISE, Diagram, OpError, OpSpec, Shape, Window, register

MERGE = Diagram(kind="merge")  # a small circle ("+", "x"), or a small box ("concat")


def _same_shapes(shapes: list[Shape], args: dict) -> Shape:
    first = shapes[0]
    for other in shapes[1:]:
        if other != first:
            raise OpError("shapes differ")
    return first


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


def _merge(name: str, doc: str, infer, label, macs=lambda i, o, a: prod(o), receptive_field=POINTWISE,
           diagram: Diagram = MERGE) -> None:
    # Merges are statements, not modules: the code generator writes them inline. A merge's
    # receptive field is the widest of its inputs' (the analysis takes it) and its own.
    register(OpSpec(
        name=name, doc=doc, category="merge", positional=(), keywords=(),
        infer=infer, label=label, macs=macs, internal=True,
        receptive_field=receptive_field, nonlinear=False, diagram=diagram,
    ))


register(OpSpec(
    name="input", doc="The network's input tensor.", category="io", positional=(), keywords=(),
    infer=lambda s, a: s, label=lambda a, i, o: "input", internal=True,
    receptive_field=POINTWISE, nonlinear=False, diagram=Diagram(kind="input"),
))
_merge("residual_add", "out = scale * drop_path(body) + shortcut", _same_shapes, lambda a, i, o: "+")
_merge("add", "Element-wise sum with an earlier tensor (long skip).", _same_shapes, lambda a, i, o: "+")
_merge("mul", "Element-wise product with an earlier tensor (gating).", _same_shapes, lambda a, i, o: "x")
_merge("concat", "Channel concatenation [current, earlier], optionally center-cropping the earlier.",
       _concat_shapes, lambda a, i, o: "concat", macs=lambda i, o, a: 0)


def _zero_pad_shape(in_shape: Shape, args: dict) -> Shape:
    sizes = tuple(-(-size // s) for size, s in zip(in_shape[1:], args["stride"]))
    return (in_shape[0] + args["channels"], *sizes)


_merge("zero_pad", "Option-A shortcut: strided subsampling, then zero channels appended.",
       lambda shapes, args: _zero_pad_shape(shapes[0], args),
       lambda a, i, o: "zero-pad", macs=lambda i, o, a: 0,
       receptive_field=lambda i, o, a: Window((1,) * len(a["stride"]), a["stride"]),
       diagram=BOX)  # drawn as a box on the shortcut, not as a merge


def merge_shape(name: str, shapes: list[Shape], args: dict) -> Shape:
    """Output shape of an internal op; raises :class:`OpError` on a mismatch."""
    from .base import REGISTRY

    return REGISTRY[name].infer(shapes, args)
