"""Small torch modules for ops torch does not have as modules.

Imported only when a module is built (never by the front end).
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


class ResidualAdd(nn.Module):
    """``shortcut + scale * drop_path(body)``: the merge of a residual unit.

    Drop path (stochastic depth) zeroes the body for a random subset of samples
    during training and rescales the rest, as torchvision's StochasticDepth("row").
    """

    def __init__(self, scale: float = 1.0, drop_path: float = 0.0):
        super().__init__()
        self.scale = scale
        self.drop_path = drop_path

    def forward(self, body: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.drop_path > 0.0 and self.training:
            keep = 1.0 - self.drop_path
            mask_shape = (body.shape[0],) + (1,) * (body.dim() - 1)
            mask = body.new_empty(mask_shape).bernoulli_(keep).div_(keep)
            body = body * mask
        if self.scale != 1.0:
            body = body * self.scale
        return body + shortcut

    def extra_repr(self) -> str:
        return f"scale={self.scale}, drop_path={self.drop_path}"


class Add(nn.Module):
    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return x + other


class Mul(nn.Module):
    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return x * other


def center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop the spatial dimensions of ``x`` to those of ``like``, keeping the center."""
    for dim in range(2, x.dim()):
        excess = x.shape[dim] - like.shape[dim]
        if excess:
            x = x.narrow(dim, excess // 2, like.shape[dim])
    return x


class Concat(nn.Module):
    """Channel concatenation ``[x, other]``, center-cropping ``other`` if asked."""

    def __init__(self, crop: str | None = None):
        super().__init__()
        self.crop = crop

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if self.crop == "center":
            other = center_crop(other, x)
        return torch.cat([x, other], dim=1)

    def extra_repr(self) -> str:
        return f"crop={self.crop}" if self.crop else ""


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2015: subsample by striding, append zero channels. No parameters."""

    def __init__(self, stride: tuple[int, ...], channels: int):
        super().__init__()
        self.stride = tuple(stride)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in self.stride)
        x = x[index]
        if self.channels:
            x = F.pad(x, (0, 0) * len(self.stride) + (0, self.channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, channels=+{self.channels}"
