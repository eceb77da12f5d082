"""Smoothing: ACT's temporal ensemble of the last plans (Zhao et al. 2023).

At ``k = 1`` the planner replans every step; with a temporal ensemble of ``n`` plans each
step's target is the mean of what the environment's last ``n`` plans predicted for it: the
plan made ``j`` steps ago contributes its row ``j + offset``. With ``decay = m`` the mean is
weighted, the plan made ``j`` steps ago by ``exp(-m j)``: ``m > 0`` trusts the newer plans
more, ``m < 0`` the older ones (ACT weights the oldest most).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Smoothing:
    """The temporal ensemble of a planner (``k = 1`` only)."""

    plans: int = 1
    """Plans averaged per step (1: the newest plan's target alone)."""
    decay: float = 0.0
    """Weight of the plan made ``j`` steps ago, ``exp(-decay j)``."""

    def ensemble(self, horizon: int) -> TemporalEnsemble:
        """The ensemble of plans of ``horizon`` rows (ValueError for a size or decay it
        cannot take)."""
        return TemporalEnsemble(self.plans, self.decay, horizon)


class TemporalEnsemble:
    """Each environment's last ``size`` plans ``(H, D)``, newest first, and their mean rows."""

    def __init__(self, size: int, decay: float, horizon: int) -> None:
        if not 1 <= size <= horizon - 1:
            raise ValueError(
                f"temporal ensemble must be in 1..{horizon - 1} plans for horizon {horizon}, "
                f"got {size}"
            )
        if not math.isfinite(decay) or -decay * (size - 1) > 80:
            raise ValueError(
                f"ensemble decay must be a finite number >= {-80 / max(size - 1, 1):g}"
                f" for {size} plans (weights up to e^80), got {decay}"
            )
        self.size = size
        self._weights = torch.exp(-decay * torch.arange(size))  # (n,) plan made j steps ago
        self.reset(0, (horizon, 0))

    def reset(self, num_envs: int, plan_shape: tuple[int, int]) -> None:
        """Forget all plans of ``num_envs`` environments whose plans are ``(H, D)``."""
        self._recent = torch.zeros(num_envs, self.size, *plan_shape)
        self._count = np.zeros(num_envs, dtype=np.int64)

    def remember(self, plans: torch.Tensor, env_ids: np.ndarray) -> None:
        """Push the new plans ``(N, H, D)`` in front of the environments' last plans."""
        self._recent[env_ids] = torch.cat([plans[:, None], self._recent[env_ids, :-1]], dim=1)
        self._count[env_ids] = np.minimum(self._count[env_ids] + 1, self.size)

    def mean(self, env_ids: np.ndarray, row_offset: int | np.ndarray) -> torch.Tensor:
        """``(N, D)``: the weighted mean over the last plans of the row each made for this
        step (the plan made ``j`` steps ago: row ``j + row_offset``; one offset or ``(N,)``)."""
        ages = torch.arange(self.size)
        offsets = torch.as_tensor(row_offset).expand(len(env_ids))[:, None]
        everyone = torch.arange(len(env_ids))[:, None]
        rows = self._recent[env_ids][everyone, ages, ages + offsets]  # (N, n, D)
        known = torch.as_tensor(self._count[env_ids])[:, None] > ages  # (N, n)
        weights = known * self._weights  # (N, n)
        return (rows * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
