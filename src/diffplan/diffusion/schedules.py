"""Noise schedules ``beta_1 .. beta_T``, computed in float64.

* ``cosine`` (Nichol & Dhariwal 2021, eq. 17; Diffuser's default): ``alpha_bar(t)``
  follows ``cos^2((t/T + s) / (1 + s) * pi/2)``, betas clipped to ``max_beta``.
* ``linear`` (Ho et al. 2020): betas linear from ``1e-4`` to ``0.02`` for
  ``T = 1000``, rescaled by ``1000 / T`` for shorter chains (Nichol & Dhariwal)
  so that ``alpha_bar_T`` stays near zero, and clipped to ``max_beta``.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

ScheduleKind = Literal["cosine", "linear"]
MAX_BETA = 0.999


def cosine_betas(num_steps: int, s: float = 0.008) -> torch.Tensor:
    """``(T,)`` float64 betas of the cosine schedule."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)


def linear_betas(num_steps: int) -> torch.Tensor:
    """``(T,)`` float64 betas of the (length-rescaled) linear schedule."""
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64).clamp(
        max=MAX_BETA
    )


def make_betas(kind: ScheduleKind, num_steps: int) -> torch.Tensor:
    """``(T,)`` float64 betas of schedule ``kind``."""
    if num_steps < 1:
        raise ValueError(f"the number of diffusion steps must be >= 1, got {num_steps}")
    if kind == "cosine":
        return cosine_betas(num_steps)
    if kind == "linear":
        return linear_betas(num_steps)
    raise ValueError(f"unknown noise schedule {kind!r}; choose one of {get_args(ScheduleKind)}")
