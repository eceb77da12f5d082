"""Inference-only copies of :class:`~diffplan.models.TemporalUnet` and
:class:`~diffplan.models.ValueNetwork` on flattened windows.

With the short horizons of a planner (8 to 32 steps), every layer of the U-Net is a
small linear map of the whole window followed by cheap element-wise work. This copy
keeps each activation flattened, ``(B, L * C)`` with time major (row ``l * C + c`` is
channel ``c`` at step ``l``), and writes every linear layer as one matrix product:

- a ``Conv1d`` or ``ConvTranspose1d`` of a length-``L`` sequence is the ``(L C_in,
  L_out C_out)`` matrix of its response to each basis window (a banded Toeplitz matrix);
  convolutions of the up levels read the concatenation ``[x, skip]`` of two flattened
  tensors, whose rows the matrix follows;
- ``GroupNorm`` runs on the ``(B, C, L)`` view of its input;
- the step embedding's per-block projection is tiled over the ``L`` steps.

The matrices hold more multiply-adds than the convolutions (zeros outside the band;
their size grows as ``L^2``), but a graph of a few dozen dense products and element-wise
nodes, with no gathers or pads, is the fastest graph at H = 8 from ten windows
up (``benchmarks/backend_graphs.py``); in eager PyTorch its backward pass is as short,
which is what value guidance differentiates. A copy shares no storage with the source
network: rebuild it after the weights change. It computes the same function (tested to
float tolerance).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

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
    check_windows,
)
from diffplan.models.value import ValueNetwork


def linear_operator(
    layer: nn.Conv1d | nn.ConvTranspose1d, parts: Sequence[int], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight (sum(parts) L, L_out C_out), bias (L_out C_out,))`` of ``layer`` on
    flattened inputs that concatenate ``len(parts)`` tensors of ``parts[i]`` channels each
    (the layer's input channels in that order), each ``(B, L * parts[i])`` time major."""
    in_channels = sum(parts)
    rows, offset = [], 0
    for channels in parts:
        basis = torch.zeros(length * channels, in_channels, length)
        index = torch.arange(length * channels)
        basis[index, offset + index % channels, index // channels] = 1.0
        rows.append(basis)
        offset += channels
    basis = torch.cat(rows)
    with torch.no_grad():
        bias = layer.bias.detach() if layer.bias is not None else None
        if isinstance(layer, nn.ConvTranspose1d):
            response = F.conv_transpose1d(
                basis, layer.weight, None, layer.stride, layer.padding, layer.output_padding
            )
        else:
            response = F.conv1d(basis, layer.weight, None, layer.stride, layer.padding)
    out_length = response.shape[-1]
    weight = response.transpose(1, 2).reshape(len(basis), -1)
    flat_bias = (
        torch.zeros(out_length, layer.out_channels) if bias is None else bias.repeat(out_length, 1)
    )
    return weight.clone(), flat_bias.reshape(-1).clone()


class FlatLinear(nn.Module):
    """A convolution as one matrix product: ``(B, L C_in) -> (B, L_out C_out)``."""

    def __init__(
        self, layer: nn.Conv1d | nn.ConvTranspose1d, parts: Sequence[int], length: int
    ) -> None:
        super().__init__()
        weight, bias = linear_operator(layer, parts, length)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class FlatGroupNorm(nn.Module):
    """``GroupNorm`` of a flattened ``(B, L C)`` tensor (statistics over each group's
    channels at all ``L`` steps): ``F.group_norm`` on its ``(B, C, L)`` view, 1.4x faster
    at 64 windows than products with a block averaging matrix (docs/PERFORMANCE.md)."""

    def __init__(self, norm: nn.GroupNorm, length: int) -> None:
        super().__init__()
        self.length, self.groups, self.eps = length, norm.num_groups, norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(norm.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.reshape(len(x), self.length, -1).transpose(1, 2)
        normed = F.group_norm(steps, self.groups, self.weight, self.bias, self.eps)
        return normed.transpose(1, 2).reshape(x.shape)


def _block(block: ConvBlock, parts: Sequence[int], length: int) -> nn.Sequential:
    conv, norm, _ = block
    return nn.Sequential(FlatLinear(conv, parts, length), FlatGroupNorm(norm, length), nn.Mish())


class _Residual(nn.Module):
    """A :class:`ResidualBlock` on flattened inputs of ``parts`` channels at length ``L``;
    it takes the step embedding after the projection's Mish (shared by all blocks)."""

    def __init__(self, block: ResidualBlock, parts: Sequence[int], length: int) -> None:
        super().__init__()
        self.block1 = _block(block.block1, parts, length)
        self.block2 = _block(block.block2, [block.block2[0].in_channels], length)
        linear = block.step_proj[1]
        self.step_weight = nn.Parameter(linear.weight.detach().t().repeat(1, length), False)
        self.step_bias = nn.Parameter(linear.bias.detach().repeat(length), False)
        self.skip: nn.Module = (
            nn.Identity()
            if isinstance(block.skip, nn.Identity)
            else FlatLinear(block.skip, parts, length)
        )

    def forward(self, x: torch.Tensor, mished: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + torch.addmm(self.step_bias, mished, self.step_weight)
        return self.block2(h) + self.skip(x)


class _Down(nn.Module):
    def __init__(self, level: DownLevel, channels: int, length: int) -> None:
        super().__init__()
        width = level.res1.block1[0].out_channels
        self.res1 = _Residual(level.res1, [channels], length)
        self.res2 = _Residual(level.res2, [width], length)
        self.down: nn.Module = (
            nn.Identity()
            if isinstance(level.down, nn.Identity)
            else FlatLinear(level.down, [width], length)
        )

    def forward(self, x: torch.Tensor, mished: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.res2(self.res1(x, mished), mished)
        return self.down(skip), skip


class _Up(nn.Module):
    def __init__(self, level: UpLevel, length: int) -> None:
        super().__init__()
        half = level.res1.block1[0].in_channels // 2
        width = level.res1.block1[0].out_channels
        self.res1 = _Residual(level.res1, [half, half], length)
        self.res2 = _Residual(level.res2, [width], length)
        self.up = FlatLinear(level.up, [width], length)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, mished: torch.Tensor) -> torch.Tensor:
        h = self.res1(torch.cat([x, skip], dim=-1), mished)
        return self.up(self.res2(h, mished))


def _flat_down_path(
    levels: nn.ModuleList, channels: int, length: int
) -> tuple[nn.ModuleList, int, int]:
    """Flat copies of the down ``levels`` reading ``channels`` at ``length`` steps; also
    the channels and length of their output."""
    downs = []
    for level in levels:
        downs.append(_Down(level, channels, length))
        channels = level.res2.block2[0].out_channels
        length = length if isinstance(level.down, nn.Identity) else length // 2
    return nn.ModuleList(downs), channels, length


class FlatUnet(UnetCopy):
    """A :class:`TemporalUnet` without attention on flattened windows (module docstring)."""

    def __init__(self, unet: TemporalUnet) -> None:
        super().__init__(unet)
        self.downs, channels, length = _flat_down_path(
            unet.downs, unet.transition_dim, unet.horizon
        )
        self.mid1 = _Residual(unet.mid1, [channels], length)
        self.mid2 = _Residual(unet.mid2, [channels], length)
        ups = []
        for level in unet.ups:
            ups.append(_Up(level, length))
            length *= 2
        self.ups = nn.ModuleList(ups)
        block, conv = unet.final
        width = block[0].in_channels
        self.final = nn.Sequential(
            _block(block, [width], length), FlatLinear(conv, [width], length)
        )

    def denoise(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        mished = F.mish(emb)
        h, skips = x.flatten(1), []
        for level in self.downs:
            h, skip = level(h, mished)
            skips.append(skip)
        h = self.mid2(self.mid1(h, mished), mished)
        for level in self.ups:
            h = level(h, skips.pop(), mished)
        return self.final(h).unflatten(1, (self.horizon, self.transition_dim))


class FlatValueNetwork(nn.Module):
    """The same value ``(x (B, H, D), t (B,)) -> (B,)`` as a :class:`ValueNetwork`,
    differentiable in ``x`` (value guidance); build it with :meth:`from_value`."""

    def __init__(self, value: ValueNetwork) -> None:
        super().__init__()
        self.horizon, self.transition_dim = value.horizon, value.transition_dim
        self.step_embed = copy.deepcopy(value.step_embed)
        self.downs, channels, length = _flat_down_path(
            value.downs, value.transition_dim, value.horizon
        )
        self.head = copy.deepcopy(value.head)
        # The head reads the features channel major (c * L + l); ours are time major.
        first = self.head[0]
        features = channels * length
        order = torch.arange(features).reshape(channels, length).t().reshape(-1)
        with torch.no_grad():
            first.weight[:, :features] = first.weight[:, :features][:, order].clone()
        self.requires_grad_(False)

    @classmethod
    def from_value(cls, value: ValueNetwork) -> FlatValueNetwork:
        """A copy of ``value``'s current weights, in eval mode."""
        return cls(value).eval()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_windows(x, self.horizon, self.transition_dim)
        emb = self.step_embed(t)
        mished, h = F.mish(emb), x.flatten(1)
        for level in self.downs:
            h, _ = level(h, mished)
        return self.head(torch.cat([h, emb], dim=-1)).squeeze(-1)
