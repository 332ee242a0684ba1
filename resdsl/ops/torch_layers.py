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


def _patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    """Swin's patch merging ([B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 4C]), as torchvision's
    ``_patch_merging_pad``: pad H and W to even, then the four 2x2 neighbours side by side.
    """
    height, width = x.shape[-3], x.shape[-2]
    x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3], -1)


class ShiftedWindowAttention(nn.Module):
    """Swin's (shifted) window multi-head self-attention on [B, H, W, C] with a relative
    position bias: torchvision's ShiftedWindowAttention (same submodules, parameters,
    buffer and computation: padding to whole windows, cyclic shift, the -100 mask);
    ``v2``: ShiftedWindowAttentionV2 (cosine attention with a learned logit scale, the
    bias from an MLP of log-spaced relative coordinates, no key bias)."""

    def __init__(
        self,
        dim: int,
        window: int,
        shift: int,
        heads: int,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
        v2: bool = False,
    ) -> None:
        super().__init__()
        self.window, self.shift, self.heads, self.v2 = window, shift, heads, v2
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        if v2:
            span = torch.arange(-(window - 1), window, dtype=torch.float32)
            table = torch.stack(torch.meshgrid([span, span], indexing="ij"))
            table = table.permute(1, 2, 0).contiguous().unsqueeze(0) / (window - 1) * 8
            table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0
            self.register_buffer("relative_coords_table", table)
        else:
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * window - 1) ** 2, heads)
            )
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        )
        coords = torch.flatten(coords, 1)
        relative = (
            (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        )
        relative[:, :, 0] += window - 1  # shift to start from 0
        relative[:, :, 1] += window - 1
        relative[:, :, 0] *= 2 * window - 1
        self.register_buffer("relative_position_index", relative.sum(-1).flatten())
        if v2:
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))
            self.cpb_mlp = nn.Sequential(
                nn.Linear(2, 512),
                nn.ReLU(inplace=True),
                nn.Linear(512, heads, bias=False),
            )
            with torch.no_grad():
                self.qkv.bias[dim : 2 * dim].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, window, heads = self.window * self.window, self.window, self.heads
        if self.v2:
            table = self.cpb_mlp(self.relative_coords_table).view(-1, heads)
        else:
            table = self.relative_position_bias_table
        bias = table[self.relative_position_index]
        bias = bias.view(tokens, tokens, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        if self.v2:
            bias = 16 * torch.sigmoid(bias)
        batch, height, width, channels = x.shape
        x = F.pad(
            x,
            (
                0,
                0,
                0,
                (window - width % window) % window,
                0,
                (window - height % window) % window,
            ),
        )
        _, pad_h, pad_w, _ = x.shape
        # no shift along a dim the window covers whole
        shift = (
            0 if window >= pad_h else self.shift,
            0 if window >= pad_w else self.shift,
        )
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = (pad_h // window) * (pad_w // window)
        x = x.view(batch, pad_h // window, window, pad_w // window, window, channels)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch * windows, tokens, channels)
        qkv_bias = self.qkv.bias
        if self.v2:  # no key bias
            qkv_bias = qkv_bias.clone()
            qkv_bias[channels : 2 * channels].zero_()
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.reshape(x.size(0), x.size(1), 3, heads, channels // heads).permute(
            2, 0, 3, 1, 4
        )
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.v2:  # cosine attention
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            scale = torch.clamp(self.logit_scale, max=4.605170185988092).exp()  # <= 100
            attn = attn * scale + bias
        else:
            q = q * (channels // heads) ** -0.5
            attn = q.matmul(k.transpose(-2, -1)) + bias
        if sum(shift) > 0:
            # tokens from different regions of the rolled map must not attend to each other
            mask = x.new_zeros((pad_h, pad_w))
            h_slices = ((0, -window), (-window, -shift[0]), (-shift[0], None))
            w_slices = ((0, -window), (-window, -shift[1]), (-shift[1], None))
            count = 0
            for h in h_slices:
                for w in w_slices:
                    mask[h[0] : h[1], w[0] : w[1]] = count
                    count += 1
            mask = mask.view(pad_h // window, window, pad_w // window, window)
            mask = mask.permute(0, 2, 1, 3).reshape(windows, tokens)
            mask = mask.unsqueeze(1) - mask.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, float(-100.0)).masked_fill(
                mask == 0, float(0.0)
            )
            attn = attn.view(x.size(0) // windows, windows, heads, x.size(1), x.size(1))
            attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(
                -1, heads, x.size(1), x.size(1)
            )
        attn = F.dropout(
            F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training
        )
        x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), channels)
        x = F.dropout(
            F.linear(x, self.proj.weight, self.proj.bias),
            p=self.dropout,
            training=self.training,
        )
        x = x.view(batch, pad_h // window, pad_w // window, window, window, channels)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, pad_h, pad_w, channels)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :height, :width, :].contiguous()
