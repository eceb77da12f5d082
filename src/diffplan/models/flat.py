"""Inference-only copies of :class:`~diffplan.models.TemporalUnet` and
:class:`~diffplan.models.ValueNetwork` on flattened windows.

With the short horizons of a planner (8 to 32 steps), every layer of the U-Net is a
small linear map of the whole window followed by cheap element-wise work. This copy
keeps each activation flattened, ``(B, C * L)`` with channel major (row ``c * L + l`` is
channel ``c`` at step ``l``: the flattened ``(B, C, L)`` view, so each GroupNorm group
is one contiguous slice), and writes every linear layer as one matrix product:

- a ``Conv1d`` or ``ConvTranspose1d`` of a length-``L`` sequence is the ``(C_in L,
  C_out L_out)`` matrix of its response to each basis window (a banded Toeplitz matrix);
  convolutions of the up levels read the concatenation ``[x, skip]`` of two flattened
  tensors, which is the flattened concatenation of their channels;
- ``GroupNorm`` is a layer norm of each group's slice, ``(B, G, C L / G)``, then the
  per-channel scale and shift (one ``LayerNormalization`` node in ONNX Runtime once
  ``diffusion/backends.py`` folds them in);
- the step embedding's per-block projection is tiled over the ``L`` steps and folded
  through the block's second convolution; all blocks' projections are one product, of
  one row where every window has the same step and condition;
- Mish, in eager runs, is one sigmoid and a few products (:func:`mish`), its slope
  computed in the forward pass when a gradient is needed (value guidance).

The windows ``(B, H, D)`` are transposed to ``(B, D, H)`` on the way in and back out.

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
from collections.abc import Iterator, Sequence
from typing import Any

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
    layer: nn.Conv1d | nn.ConvTranspose1d,
    parts: Sequence[int],
    length: int,
    *,
    time_major: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight (sum(parts) L, L_out C_out), bias (L_out C_out,))`` of ``layer`` on
    flattened inputs that concatenate ``len(parts)`` tensors of ``parts[i]`` channels each
    (the layer's input channels in that order), each ``(B, L * parts[i])``; inputs and
    output time major (``l * C + c``) or, with ``time_major=False``, channel major
    (``c * L + l``, the flattened ``(B, C, L)`` view)."""
    in_channels = sum(parts)
    rows, offset = [], 0
    for channels in parts:
        basis = torch.zeros(length * channels, in_channels, length)
        index = torch.arange(length * channels)
        channel, step = (
            (index % channels, index // channels)
            if time_major
            else (index // length, index % length)
        )
        basis[index, offset + channel, step] = 1.0
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
    if bias is None:
        bias = torch.zeros(layer.out_channels)
    if time_major:
        return response.transpose(1, 2).reshape(len(basis), -1).clone(), bias.repeat(out_length)
    return response.reshape(len(basis), -1).clone(), bias.repeat_interleave(out_length)


def _mish_terms(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``p = sigmoid(x)``, ``s2 = (1 - p)^2``, ``q = 1 - s2``, ``d = 1 + s2`` and
    ``mish(x) = x q / d``: with ``1 - p = 1 / (1 + e^x)``, ``tanh(softplus(x)) =
    ((1 + e^x)^2 - 1) / ((1 + e^x)^2 + 1) = q / d``."""
    p = torch.sigmoid(x)
    s2 = torch.rsub(p, 1.0).square_()
    q = torch.rsub(s2, 1.0)
    d = s2 + 1.0
    return p, s2, q, d, (x * q).div_(d)


class _MishFunction(torch.autograd.Function):
    """Mish whose forward pass also computes its slope ``(q + 4 x p s2 / d) / d``
    (:func:`_mish_terms`; ``q' = 2 p s2 = -d'`` and ``q + d = 2``), so the backward pass
    is one product."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        p, s2, q, d, value = _mish_terms(x)
        ctx.save_for_backward(torch.addcdiv(q, s2.mul_(p).mul_(x), d, value=4.0).div_(d))
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (slope,) = ctx.saved_tensors
        return grad * slope


MISH_MIN_SIZE = 4096
"""Fewest elements :func:`mish` computes by its own terms (``F.mish`` is as fast at 4,096
on one CPU thread and faster below, where the few more operators' overhead dominates)."""


def mish(x: torch.Tensor) -> torch.Tensor:
    """``x tanh(softplus(x))`` from one sigmoid and a few products (:func:`_mish_terms`), for
    the copies' eager runs: at ``(64, 256)`` on one CPU thread the forward pass is 2x and
    forward + backward 1.7x faster than ``F.mish`` (docs/PERFORMANCE.md, run 7); ``F.mish``
    below ``MISH_MIN_SIZE`` elements and when exported (one node; ONNX Runtime's time grows
    with the node count)."""
    if torch.compiler.is_exporting() or x.numel() < MISH_MIN_SIZE:
        return F.mish(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MishFunction.apply(x)
    return _mish_terms(x)[-1]


class Mish(nn.Module):
    """:func:`mish` as a module (``nn.Mish`` in the copies)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)


def _with_fast_mish(layers: nn.Sequential) -> nn.Sequential:
    """A copy of ``layers`` with each ``nn.Mish`` replaced by :class:`Mish`."""
    return nn.Sequential(
        *(Mish() if isinstance(layer, nn.Mish) else copy.deepcopy(layer) for layer in layers)
    )


class FlatLinear(nn.Module):
    """A convolution as one matrix product on channel-major inputs:
    ``(B, C_in L) -> (B, C_out L_out)``."""

    def __init__(self, layer: nn.Conv1d | nn.ConvTranspose1d, length: int) -> None:
        super().__init__()
        weight, bias = linear_operator(layer, [layer.in_channels], length, time_major=False)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class FlatGroupNorm(nn.Module):
    """``GroupNorm`` of a flattened channel-major ``(B, C L)`` tensor: a layer norm of
    each group's ``(B, G, C L / G)`` slice, then the channels' scale and shift tiled over
    the ``L`` steps (``weight``, ``bias`` ``(G, C L / G)``). 1.4x faster at 64 windows than
    products with a block averaging matrix; in ONNX Runtime 3 nodes (two reshapes around
    one ``LayerNormalization``, after ``diffusion/backends.py``'s rewrite) instead of 11
    for ``F.group_norm`` on a time-major copy (docs/PERFORMANCE.md)."""

    def __init__(self, norm: nn.GroupNorm, length: int) -> None:
        super().__init__()
        self.eps = norm.eps

        def tiled(values: torch.Tensor) -> nn.Parameter:
            grouped = values.detach().repeat_interleave(length).reshape(norm.num_groups, -1)
            return nn.Parameter(grouped, requires_grad=False)

        self.weight, self.bias = tiled(norm.weight), tiled(norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.unflatten(1, self.weight.shape)
        normed = F.layer_norm(groups, self.weight.shape[1:], eps=self.eps)
        return (normed * self.weight + self.bias).flatten(1)


def _block(block: ConvBlock, length: int) -> nn.Sequential:
    conv, norm, _ = block
    return nn.Sequential(FlatLinear(conv, length), FlatGroupNorm(norm, length), Mish())


class _Residual(nn.Module):
    """A :class:`ResidualBlock` on flattened inputs at length ``L``. Its step projection,
    added before ``block2``'s convolution, is folded through it: ``(h + s) W + b`` is
    ``h W + (s W + b)``, one product of ``h`` onto the step term ``s W + b``, which it
    takes as an input; ``step_operator`` maps the step embedding after Mish to that term
    (:class:`_StepTerms` computes the terms of all blocks in one product)."""

    def __init__(self, block: ResidualBlock, length: int) -> None:
        super().__init__()
        self.block1 = _block(block.block1, length)
        conv2 = FlatLinear(block.block2[0], length)
        self.weight2 = conv2.weight
        self.block2 = nn.Sequential(FlatGroupNorm(block.block2[1], length), Mish())
        linear = block.step_proj[1]
        step_weight = linear.weight.detach().t().repeat_interleave(length, dim=1)
        step_bias = linear.bias.detach().repeat_interleave(length)
        self.step_operator = (step_weight @ conv2.weight, step_bias @ conv2.weight + conv2.bias)
        self.skip: nn.Module = (
            nn.Identity() if isinstance(block.skip, nn.Identity) else FlatLinear(block.skip, length)
        )

    def forward(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """``x (B, C_in L)`` and the step term ``(B, C_out L)`` -> ``(B, C_out L)``."""
        return self.block2(torch.addmm(step, self.block1(x), self.weight2)) + self.skip(x)


class _StepTerms(nn.Module):
    """The step terms of the residual blocks of ``network``, in the order they run, from
    the step embedding: ``(B, E)`` -> one ``(B, C_i L_i)`` per block, as one product of
    the embedding after Mish. Where every row of the embedding is the same (a sampler's
    step, no per-window condition) the terms are computed once, ``(1, C_i L_i)``, and the
    blocks' products broadcast them (not in an export, whose graph takes any steps)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        # modules() lists the blocks in the order they were built, which is the order they run
        residuals = [module for module in network.modules() if isinstance(module, _Residual)]
        weights, biases = zip(*(block.step_operator for block in residuals), strict=True)
        self.weight = nn.Parameter(torch.cat(weights, dim=1), requires_grad=False)
        self.bias = nn.Parameter(torch.cat(biases), requires_grad=False)
        self.widths = [len(bias) for bias in biases]

    def forward(self, emb: torch.Tensor) -> Iterator[torch.Tensor]:
        if not torch.compiler.is_exporting() and bool((emb == emb[:1]).all()):
            emb = emb[:1]
        return iter(torch.addmm(self.bias, mish(emb), self.weight).split(self.widths, dim=1))


class _Down(nn.Module):
    def __init__(self, level: DownLevel, length: int) -> None:
        super().__init__()
        self.res1 = _Residual(level.res1, length)
        self.res2 = _Residual(level.res2, length)
        self.down: nn.Module = (
            nn.Identity() if isinstance(level.down, nn.Identity) else FlatLinear(level.down, length)
        )

    def forward(
        self, x: torch.Tensor, steps: Iterator[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.res2(self.res1(x, next(steps)), next(steps))
        return self.down(skip), skip


class _Up(nn.Module):
    def __init__(self, level: UpLevel, length: int) -> None:
        super().__init__()
        self.res1 = _Residual(level.res1, length)
        self.res2 = _Residual(level.res2, length)
        self.up = FlatLinear(level.up, length)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, steps: Iterator[torch.Tensor]
    ) -> torch.Tensor:
        h = self.res1(torch.cat([x, skip], dim=-1), next(steps))
        return self.up(self.res2(h, next(steps)))


def _flat_down_path(levels: nn.ModuleList, length: int) -> tuple[nn.ModuleList, int]:
    """Flat copies of the down ``levels`` reading ``length`` steps; also the length of
    their output."""
    downs = []
    for level in levels:
        downs.append(_Down(level, length))
        length = length if isinstance(level.down, nn.Identity) else length // 2
    return nn.ModuleList(downs), length


def _channel_major(x: torch.Tensor) -> torch.Tensor:
    """Windows ``(B, H, D)`` -> ``(B, D H)``, channel major."""
    return x.transpose(1, 2).flatten(1)


class FlatUnet(UnetCopy):
    """A :class:`TemporalUnet` without attention on flattened windows (module docstring)."""

    def __init__(self, unet: TemporalUnet) -> None:
        super().__init__(unet)
        self.step_embed = _with_fast_mish(unet.step_embed)
        self.downs, length = _flat_down_path(unet.downs, unet.horizon)
        self.mid1 = _Residual(unet.mid1, length)
        self.mid2 = _Residual(unet.mid2, length)
        ups = []
        for level in unet.ups:
            ups.append(_Up(level, length))
            length *= 2
        self.ups = nn.ModuleList(ups)
        block, conv = unet.final
        self.final = nn.Sequential(_block(block, length), FlatLinear(conv, length))
        self.step_terms = _StepTerms(self)

    def denoise(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        steps = self.step_terms(emb)
        h, skips = _channel_major(x), []
        for level in self.downs:
            h, skip = level(h, steps)
            skips.append(skip)
        h = self.mid2(self.mid1(h, next(steps)), next(steps))
        for level in self.ups:
            h = level(h, skips.pop(), steps)
        return self.final(h).unflatten(1, (self.transition_dim, self.horizon)).transpose(1, 2)


class FlatValueNetwork(nn.Module):
    """The same value ``(x (B, H, D), t (B,)) -> (B,)`` as a :class:`ValueNetwork`,
    differentiable in ``x`` (value guidance); build it with :meth:`from_value`."""

    def __init__(self, value: ValueNetwork) -> None:
        super().__init__()
        self.horizon, self.transition_dim = value.horizon, value.transition_dim
        self.step_embed = _with_fast_mish(value.step_embed)
        self.downs, _ = _flat_down_path(value.downs, value.horizon)
        self.head = _with_fast_mish(value.head)  # reads the features channel major, as ours are
        self.step_terms = _StepTerms(self)
        self.requires_grad_(False)

    @classmethod
    def from_value(cls, value: ValueNetwork) -> FlatValueNetwork:
        """A copy of ``value``'s current weights, in eval mode."""
        return cls(value).eval()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_windows(x, self.horizon, self.transition_dim)
        emb = self.step_embed(t)
        steps, h = self.step_terms(emb), _channel_major(x)
        for level in self.downs:
            h, _ = level(h, steps)
        return self.head(torch.cat([h, emb], dim=-1)).squeeze(-1)
