"""Exponential moving average of a model's weights (Diffuser's schedule).

Every ``every`` optimiser steps the EMA copy is updated: before ``start`` it is
reset to the live weights, afterwards ``ema <- decay * ema + (1 - decay) * live``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """EMA copy of ``model``; ``ema.model`` is a frozen module of the same class."""

    def __init__(
        self, model: nn.Module, *, decay: float = 0.995, start: int = 2000, every: int = 10
    ) -> None:
        if not 0.0 <= decay <= 1.0 or every < 1 or start < 0:
            raise ValueError(
                f"need 0 <= ema decay <= 1, ema every >= 1 and ema start >= 0; "
                f"got {decay}, {every} and {start}"
            )
        self.decay, self.start, self.every = decay, start, every
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Call after optimiser step number ``step`` (1-based) with the live ``model``."""
        if step % self.every:
            return
        pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        for ema_value, value in pairs:
            if step < self.start or not ema_value.is_floating_point():
                ema_value.copy_(value)
            else:
                ema_value.lerp_(value, 1.0 - self.decay)
