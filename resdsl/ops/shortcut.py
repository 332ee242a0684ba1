"""The projection shortcut's recipe (option B of He et al. 2016): the ops that map a
residual's input to its body's shape when the two differ. Elaboration reads this
table only, so the catalogue alone says which ops project and which norm follows.

>>> [op for op, _ in projection((64, 56, 56), (128, 28, 28), (2, 2))]
['conv', 'batchnorm']
>>> projection((16,), (32,), ())[0]
('linear', {'out_features': 32, 'bias': False})
"""

from __future__ import annotations

from typing import Callable

from .base import Shape

Recipe = tuple[tuple[str, Callable[[Shape, Shape, tuple[int, ...]], dict]], ...]


def _conv_1x1(in_shape: Shape, target: Shape, strides: tuple[int, ...]) -> dict:
    rank = len(in_shape) - 1
    return {"kernel": (1,) * rank, "out_channels": target[0], "stride": strides,
            "pad": (0,) * rank, "dilation": (1,) * rank, "groups": 1, "bias": False}


def _linear(in_shape: Shape, target: Shape, strides: tuple[int, ...]) -> dict:
    return {"out_features": target[0], "bias": False}


def _batchnorm(in_shape: Shape, target: Shape, strides: tuple[int, ...]) -> dict:
    return {"eps": 1e-5, "momentum": 0.1}  # torch's defaults, as torchvision's downsample


#: Steps ``(op, args(in_shape, target_shape, strides))`` per input: a flat tensor [F]
#: or a spatial one [C, ...]; each step's module is ``downsample.<index>``.
PROJECTIONS: dict[str, Recipe] = {
    "flat": (("linear", _linear), ("batchnorm", _batchnorm)),
    "spatial": (("conv", _conv_1x1), ("batchnorm", _batchnorm)),
}


def projection(in_shape: Shape, target: Shape, strides: tuple[int, ...]) -> list[tuple[str, dict]]:
    """The ops, with their bound arguments, that project ``in_shape`` to ``target``."""
    recipe = PROJECTIONS["flat" if len(in_shape) == 1 else "spatial"]
    return [(op, args(in_shape, target, strides)) for op, args in recipe]
