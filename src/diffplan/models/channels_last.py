"""An inference-only copy of :class:`~diffplan.models.TemporalUnet` built from matrix products.

The training network runs 1-D convolutions on ``(B, C, H)``. With horizons of 8 to
32 steps those kernels are far from the CPU's arithmetic peak (``benchmarks/
plan_speed.py``). This copy keeps activations channels-last, ``(B, H, C)``, and
writes every convolution as one matrix product over gathered taps:

- ``Conv1d(kernel K, stride s, padding p)``: pad along ``H``, concatenate the ``K``
  shifted (strided) views to ``(B, H_out, K*C_in)``, multiply by the ``(K*C_in, C_out)``
  weight.
- ``ConvTranspose1d(kernel 4, stride 2, padding 1)``: even outputs are
  ``x[m] W_1 + x[m-1] W_3``, odd ones ``x[m+1] W_0 + x[m] W_2``; both are one product,
  then interleaved.
- ``GroupNorm`` normalises over ``(H, C/groups)`` of the channels-last tensor.

It shares no storage with the source network: rebuild it after the weights change.
It computes the same function (tested to float tolerance) and is what the
planning backends export above ``FLAT_MAX_HORIZON`` steps (``diffusion/backends.py``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from diffplan.models.unet import (
    ConvBlock,
    DownLevel,
    ResidualBlock,
    TemporalUnet,
    UnetCopy,
    UpLevel,
)


class GatherConv(nn.Module):
    """``Conv1d`` as a matrix product: ``(B, H, C_in) -> (B, H_out, C_out)``."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        out_channels, in_channels, kernel = conv.weight.shape
        self.kernel, self.stride = kernel, conv.stride[0]
        self.padding = int(conv.padding[0])  # type: ignore[arg-type]
        # weight[k * C_in + c, o] = conv.weight[o, c, k]: taps in the order they are gathered
        weight = conv.weight.detach().permute(2, 1, 0).reshape(kernel * in_channels, out_channels)
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(out_channels)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == 1 and self.stride == 1:
            return F.linear(x, self.weight.t(), self.bias)
        length = x.shape[1]
        padded = F.pad(x, (0, 0, self.padding, self.padding))
        span = (length + 2 * self.padding - self.kernel) // self.stride * self.stride + 1
        taps = [padded[:, k : k + span : self.stride] for k in range(self.kernel)]
        return torch.cat(taps, dim=-1) @ self.weight + self.bias


class GatherConvTranspose(nn.Module):
    """``ConvTranspose1d(kernel 4, stride 2, padding 1)``: ``(B, H, C_in) -> (B, 2H, C_out)``."""

    def __init__(self, conv: nn.ConvTranspose1d) -> None:
        super().__init__()
        if conv.kernel_size != (4,) or conv.stride != (2,) or conv.padding != (1,):
            raise ValueError("only ConvTranspose1d(kernel 4, stride 2, padding 1) is supported")
        weight = conv.weight.detach()  # (C_in, C_out, 4)
        self.even = nn.Parameter(torch.cat([weight[..., 1], weight[..., 3]]), requires_grad=False)
        self.odd = nn.Parameter(torch.cat([weight[..., 0], weight[..., 2]]), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        padded = F.pad(x, (0, 0, 1, 1))  # row m + 1 of padded is x[m]
        here, before, after = padded[:, 1:-1], padded[:, :-2], padded[:, 2:]
        even = torch.cat([here, before], dim=-1) @ self.even
        odd = torch.cat([after, here], dim=-1) @ self.odd
        return torch.stack([even, odd], dim=2).reshape(batch, 2 * length, -1) + self.bias


class ChannelsLastGroupNorm(nn.Module):
    """``GroupNorm`` over ``(B, H, C)``: statistics over ``H`` and each group's channels."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(norm.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        grouped = x.reshape(batch, length, self.groups, channels // self.groups)
        mean = grouped.mean(dim=(1, 3), keepdim=True)
        variance = (grouped - mean).pow(2).mean(dim=(1, 3), keepdim=True)
        normed = ((grouped - mean) * torch.rsqrt(variance + self.eps)).reshape(x.shape)
        return normed * self.weight + self.bias


def _block(block: ConvBlock) -> nn.Sequential:
    conv, norm, _ = block
    return nn.Sequential(GatherConv(conv), ChannelsLastGroupNorm(norm), nn.Mish())


class _Residual(nn.Module):
    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.block1, self.block2 = _block(block.block1), _block(block.block2)
        self.step_proj = copy.deepcopy(block.step_proj)
        self.skip = nn.Identity() if isinstance(block.skip, nn.Identity) else GatherConv(block.skip)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.step_proj(emb)[:, None, :]
        return self.block2(h) + self.skip(x)


class _Down(nn.Module):
    def __init__(self, level: DownLevel) -> None:
        super().__init__()
        self.res1, self.res2 = _Residual(level.res1), _Residual(level.res2)
        self.down = nn.Identity() if isinstance(level.down, nn.Identity) else GatherConv(level.down)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.res2(self.res1(x, emb), emb)
        return self.down(skip), skip


class _Up(nn.Module):
    def __init__(self, level: UpLevel) -> None:
        super().__init__()
        self.res1, self.res2 = _Residual(level.res1), _Residual(level.res2)
        self.up = GatherConvTranspose(level.up)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.up(self.res2(self.res1(torch.cat([x, skip], dim=-1), emb), emb))


class ChannelsLastUnet(UnetCopy):
    """A :class:`TemporalUnet` without attention, channels-last (module docstring)."""

    def __init__(self, unet: TemporalUnet) -> None:
        super().__init__(unet)
        self.downs = nn.ModuleList(_Down(level) for level in unet.downs)
        self.mid1, self.mid2 = _Residual(unet.mid1), _Residual(unet.mid2)
        self.ups = nn.ModuleList(_Up(level) for level in unet.ups)
        block, conv = unet.final
        self.final = nn.Sequential(_block(block), GatherConv(conv))

    def denoise(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h, skips = x, []
        for level in self.downs:
            h, skip = level(h, emb)
            skips.append(skip)
        h = self.mid2(self.mid1(h, emb), emb)
        for level in self.ups:
            h = level(h, skips.pop(), emb)
        return self.final(h)
