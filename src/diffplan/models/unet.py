"""Temporal U-Net denoiser over windows of transitions (Diffuser's architecture).

Interfaces are batch-first ``(B, H, D)``; inside, windows are transposed to
``(B, D, H)`` so that 1-D convolutions run along the planning horizon ``H`` with
the transition dimensions ``D`` as channels.

With ``L = len(dim_mults)`` resolution levels, the down path halves the length
after every level but the last (``L - 1`` times), so ``H`` must be divisible by
``2 ** (L - 1)``; e.g. ``H = 8`` with mults ``(1, 2, 4, 8)`` reaches length 1.

With ``returns_condition`` the network also sees a target return (Decision Diffuser):
its embedding is added to the step embedding, times a ``keep`` mask that is 0 for the
unconditional model of classifier-free guidance (:mod:`diffplan.diffusion.guidance`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_SIZE = 5
NORM_GROUPS = 8


def check_horizon(horizon: int, num_levels: int) -> None:
    """Raise ``ValueError`` unless ``horizon`` can be halved ``num_levels - 1`` times."""
    factor = 2 ** (num_levels - 1)
    if horizon < 1 or horizon % factor:
        raise ValueError(
            f"horizon {horizon} must be a positive multiple of 2**(levels-1) = {factor} for "
            f"{num_levels} resolution levels (len(dim_mults)); use e.g. horizon {max(factor, 8)} "
            "or fewer dim_mults"
        )


def check_width(dim: int, dim_mults: Sequence[int]) -> None:
    """Raise ``ValueError`` unless every level's width splits into GroupNorm's groups."""
    if not dim_mults or any(m < 1 for m in dim_mults):
        raise ValueError(f"dim_mults must be non-empty positive ints, got {dim_mults}")
    if dim < 1 or dim % NORM_GROUPS:
        raise ValueError(f"dim must be a positive multiple of {NORM_GROUPS} (GroupNorm), got {dim}")


class SinusoidalEmbedding(nn.Module):
    """Diffusion step ``t (B,)`` -> ``(B, dim)`` sinusoidal features (Transformer positions)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def step_embedding(dim: int) -> nn.Sequential:
    """Diffusion step ``t (B,)`` -> ``(B, dim)`` learned embedding."""
    return nn.Sequential(
        SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim)
    )


def return_embedding(dim: int) -> nn.Sequential:
    """Normalised return ``(B, 1)`` -> ``(B, dim)`` learned embedding."""
    return nn.Sequential(
        nn.Linear(1, dim), nn.Mish(), nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim)
    )


def condition_embedding(
    step_embed: nn.Module,
    return_embed: nn.Module | None,
    t: torch.Tensor,
    returns: torch.Tensor | None,
    keep: torch.Tensor | None,
) -> torch.Tensor:
    """``(B, dim)`` embedding of steps ``t (B,)`` plus, if given, of ``returns (B,)``
    (masked by ``keep (B,)``: 1 conditions, 0 drops the return)."""
    emb = step_embed(t)
    if returns is None:
        return emb
    if return_embed is None:
        raise ValueError(
            "this network was trained without return conditioning (train with "
            "--returns.enabled for classifier-free guidance)"
        )
    conditioned = return_embed(returns[:, None])
    if keep is not None:
        conditioned = conditioned * keep[:, None]
    return emb + conditioned


class ConvBlock(nn.Sequential):
    """``(B, C_in, H) -> (B, C_out, H)``: Conv1d (same padding) -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(NORM_GROUPS, out_channels),
            nn.Mish(),
        )


class ResidualBlock(nn.Module):
    """Two conv blocks with the step embedding added in between, plus a residual path.

    ``x (B, C_in, H)``, ``emb (B, E)`` -> ``(B, C_out, H)``.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.block1 = ConvBlock(in_channels, out_channels)
        self.block2 = ConvBlock(out_channels, out_channels)
        self.step_proj = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, out_channels))
        same = in_channels == out_channels
        self.skip = nn.Identity() if same else nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.step_proj(emb)[:, :, None]
        return self.block2(h) + self.skip(x)


class SelfAttention(nn.Module):
    """Residual multi-head self-attention along the horizon, pre-normalised. ``(B, C, H)``."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention needs channels ({channels}) divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1, bias=False)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        # (B, 3, heads, C/heads, H) -> q, k, v as (B, heads, H, C/heads): attend over H.
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, -1, length).transpose(-1, -2)
        h = F.scaled_dot_product_attention(*qkv.unbind(1))
        return x + self.out(h.transpose(-1, -2).reshape(batch, channels, length))


def maybe_attention(channels: int, attention: bool) -> nn.Module:
    return SelfAttention(channels) if attention else nn.Identity()


class DownLevel(nn.Module):
    """Two residual blocks, optional attention, then (except at the last level) halve ``H``."""

    def __init__(
        self, c_in: int, c_out: int, embed_dim: int, *, attention: bool, last: bool
    ) -> None:
        super().__init__()
        self.res1 = ResidualBlock(c_in, c_out, embed_dim)
        self.res2 = ResidualBlock(c_out, c_out, embed_dim)
        self.attn = maybe_attention(c_out, attention)
        self.down = nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (downsampled output, skip features before downsampling)."""
        skip = self.attn(self.res2(self.res1(x, emb), emb))
        return self.down(skip), skip


class UpLevel(nn.Module):
    """Concatenate the skip features, two residual blocks, optional attention, double ``H``."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, *, attention: bool) -> None:
        super().__init__()
        self.res1 = ResidualBlock(2 * c_in, c_out, embed_dim)
        self.res2 = ResidualBlock(c_out, c_out, embed_dim)
        self.attn = maybe_attention(c_out, attention)
        self.up = nn.ConvTranspose1d(c_out, c_out, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.res1(torch.cat([x, skip], dim=1), emb)
        return self.up(self.attn(self.res2(h, emb)))


def down_path(
    transition_dim: int, dim: int, dim_mults: Sequence[int], *, attention: bool
) -> nn.ModuleList:
    """Down levels ``D -> dim * dim_mults[0] -> ...``; every level but the last halves H."""
    widths = [dim * m for m in dim_mults]
    ins = [transition_dim, *widths[:-1]]
    return nn.ModuleList(
        DownLevel(c_in, c_out, dim, attention=attention, last=i == len(widths) - 1)
        for i, (c_in, c_out) in enumerate(zip(ins, widths, strict=True))
    )


def check_windows(x: torch.Tensor, horizon: int, transition_dim: int) -> None:
    """Raise a clear error unless ``x`` is ``(B, horizon, transition_dim)``."""
    if x.ndim != 3 or x.shape[1:] != (horizon, transition_dim):
        raise ValueError(f"expected windows (B, {horizon}, {transition_dim}), got {tuple(x.shape)}")


class WindowDenoiser(nn.Module):
    """Base of the denoisers ``(x (B, H, D), t (B,)[, returns (B,), keep (B,)]) -> (B, H, D)``:
    checks the windows, embeds the condition (:func:`condition_embedding` of
    ``step_embed`` and ``return_embed``) and calls :meth:`denoise`."""

    horizon: int
    transition_dim: int
    step_embed: nn.Module
    return_embed: nn.Module | None

    def denoise(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x (B, H, D)`` and the condition embedding ``emb (B, E)`` -> ``(B, H, D)``."""
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        returns: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_windows(x, self.horizon, self.transition_dim)
        emb = condition_embedding(self.step_embed, self.return_embed, t, returns, keep)
        return self.denoise(x, emb)


class TemporalUnet(WindowDenoiser):
    """Denoiser ``(x (B, H, D), t (B,)[, returns (B,), keep (B,)]) -> (B, H, D)``
    (predicted noise or clean window).

    Args:
        horizon: window length ``H``; a multiple of ``2 ** (len(dim_mults) - 1)``.
        transition_dim: ``D = obs_dim + act_dim``.
        dim: base channel width (a multiple of 8); level ``i`` has ``dim * dim_mults[i]``.
        dim_mults: width multipliers, one per resolution level.
        attention: add self-attention after every level and in the middle.
        returns_condition: also embed a target return (see the module docstring).
    """

    def __init__(
        self,
        horizon: int,
        transition_dim: int,
        *,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 4, 8),
        attention: bool = False,
        returns_condition: bool = False,
    ) -> None:
        super().__init__()
        check_width(dim, dim_mults)
        check_horizon(horizon, len(dim_mults))
        self.horizon, self.transition_dim = horizon, transition_dim
        widths = [dim * m for m in dim_mults]
        self.step_embed = step_embedding(dim)
        self.return_embed = return_embedding(dim) if returns_condition else None
        self.downs = down_path(transition_dim, dim, dim_mults, attention=attention)
        self.mid1 = ResidualBlock(widths[-1], widths[-1], dim)
        self.mid_attn = maybe_attention(widths[-1], attention)
        self.mid2 = ResidualBlock(widths[-1], widths[-1], dim)
        # Up levels mirror all down levels but the first, so the length doubles L - 1 times.
        self.ups = nn.ModuleList(
            UpLevel(c_in, c_out, dim, attention=attention)
            for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.final = nn.Sequential(
            ConvBlock(widths[0], widths[0]), nn.Conv1d(widths[0], transition_dim, 1)
        )

    def denoise(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        skips = []
        for level in self.downs:
            h, skip = level(h, emb)
            skips.append(skip)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level in self.ups:
            h = level(h, skips.pop(), emb)
        return self.final(h).transpose(1, 2)


def has_attention(unet: TemporalUnet) -> bool:
    """Whether ``unet`` has self-attention (which its matrix-product copies do not support)."""
    return any(not isinstance(level.attn, nn.Identity) for level in unet.downs)


class UnetCopy(WindowDenoiser):
    """Base of the inference-only copies of an attention-free :class:`TemporalUnet`: the
    same denoiser through another graph. It copies the embeddings; a subclass copies the
    rest and runs it in :meth:`denoise`. Build one with :meth:`from_unet`."""

    def __init__(self, unet: TemporalUnet) -> None:
        super().__init__()
        if has_attention(unet):
            raise ValueError(
                f"the {type(self).__name__} copy has no attention; use the eager backend"
            )
        self.horizon, self.transition_dim = unet.horizon, unet.transition_dim
        self.step_embed = copy.deepcopy(unet.step_embed)
        self.return_embed = copy.deepcopy(unet.return_embed)

    @classmethod
    def from_unet(cls, unet: TemporalUnet) -> UnetCopy:
        """A copy of ``unet``'s current weights, in eval mode."""
        return cls(unet).eval()
