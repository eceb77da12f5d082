"""Value network ``r_phi(tau, t)``: the U-Net's down path, then an MLP to one scalar.

It sees noisy windows ``x_t`` with their diffusion step ``t`` (as value guidance
evaluates it during sampling) and predicts the window's normalised value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diffplan.models.unet import (
    check_horizon,
    check_width,
    check_windows,
    down_path,
    step_embedding,
)


class ValueNetwork(nn.Module):
    """``(x (B, H, D), t (B,)) -> (B,)`` value estimate.

    Args:
        horizon: window length ``H``; a multiple of ``2 ** (len(dim_mults) - 1)``.
        transition_dim: ``D = obs_dim + act_dim``.
        dim: base channel width (a multiple of 8).
        dim_mults: width multipliers of the down path, one per level.
        hidden: width of the MLP head.
    """

    def __init__(
        self,
        horizon: int,
        transition_dim: int,
        *,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 4, 8),
        hidden: int = 256,
    ) -> None:
        super().__init__()
        check_width(dim, dim_mults)
        check_horizon(horizon, len(dim_mults))
        self.horizon, self.transition_dim = horizon, transition_dim
        widths = [dim * m for m in dim_mults]
        self.step_embed = step_embedding(dim)
        self.downs = down_path(transition_dim, dim, dim_mults, attention=False)
        flat = widths[-1] * horizon // 2 ** (len(widths) - 1)
        self.head = nn.Sequential(
            nn.Linear(flat + dim, hidden),
            nn.Mish(),
            nn.Linear(hidden, hidden),
            nn.Mish(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_windows(x, self.horizon, self.transition_dim)
        emb = self.step_embed(t)
        h = x.transpose(1, 2)
        for level in self.downs:
            h, _ = level(h, emb)
        return self.head(torch.cat([h.flatten(1), emb], dim=-1)).squeeze(-1)
