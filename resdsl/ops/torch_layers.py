"""Helper modules and functions that op entries name in their ``code`` (``ChannelLayerNorm``,
``Permute``) or ``inline_code`` (``_channel_shuffle``) and that generated files contain,
defined once.

This module imports torch: the catalogue imports it only inside
:meth:`ValueArgs.call`, when a module is built, so loading the catalogue stays
torch-free. The code generator copies the source of each helper a network uses
into its file (``inspect.getsource``), so a generated file imports only torch,
and the in-memory module built by ``net.build()`` runs the very same code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dimension of a [N, C, ...] tensor (as in ConvNeXt)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


def _center_crop(x: torch.Tensor, like: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """Crop ``x`` to the spatial size of ``like`` in ``dims``, keeping the center."""
    for dim in dims:
        x = x.narrow(dim, (x.shape[dim] - like.shape[dim]) // 2, like.shape[dim])
    return x


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual body of random samples while training."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)
    return x * mask


def _parameter(shape: tuple[int, ...], init: float, std: float = 0.0) -> nn.Parameter:
    """A learnable tensor of ``shape``: every element ``init`` (ConvNeXt's layer scale), or
    drawn from N(init, std^2) when ``std`` is given (ViT's position embedding)."""
    if std:
        return nn.Parameter(torch.empty(shape).normal_(init, std))
    return nn.Parameter(torch.full(shape, init))


class Permute(nn.Module):
    """Permutes the dims of a tensor (batch dim included), as torchvision.ops.misc.Permute."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (torchvision's channel_shuffle, for any rank)."""
    batch, channels, *rest = x.shape
    x = x.view(batch, groups, channels // groups, *rest)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, *rest)


def _causal_mask(x: torch.Tensor) -> torch.Tensor:
    """nn.Transformer.generate_square_subsequent_mask for the tokens of ``x`` ([B, N, D]):
    -inf above the diagonal, so token i attends to tokens 0..i."""
    size = x.shape[1]
    mask = torch.full((size, size), float("-inf"), dtype=x.dtype, device=x.device)
    return torch.triu(mask, diagonal=1)


def _make_divisible(value: float, divisor: int, minimum: int | None = None) -> int:
    """torchvision's ``_make_divisible``: ``value`` rounded to a multiple of ``divisor``,
    not below ``minimum`` (default ``divisor``) nor below 90% of ``value``."""
    minimum = divisor if minimum is None else minimum
    rounded = max(minimum, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded
