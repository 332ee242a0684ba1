"""Tensor shapes and how they read, in one place.

A shape never includes the batch dimension. Two spellings, for two uses:
``format_shape`` writes a shape as a list (``[64, 56, 56]``: messages, tables,
reports); ``format_dims`` writes sizes joined by ``x`` (``3x3``, ``64x56x56``:
kernel sizes, op labels and diagram edges, where brackets would be noise).
"""

from __future__ import annotations

from typing import Sequence

Shape = tuple[int, ...]


def format_shape(shape: Sequence[int] | None) -> str:
    """``[3, 32, 32]``; ``?`` for a shape that is unknown after an earlier error."""
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def format_dims(dims: Sequence[int] | None) -> str:
    """``3x3``; empty for no sizes at all."""
    return "" if dims is None else "x".join(str(d) for d in dims)
