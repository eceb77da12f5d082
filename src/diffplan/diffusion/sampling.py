"""Sampling windows from a trained denoiser (the report's Algorithm 1.2).

:func:`sample_windows` is the core, in normalised units; :class:`TrajectoryGenerator`
is the public wrapper that takes raw observations and returns raw windows.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from diffplan.data.normalizers import Normalizer
from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.masks import impose, state_mask, state_values


class Guide(Protocol):
    """Steers samples during denoising (e.g. :class:`~diffplan.planning.ValueGuide`).

    At every step ``t`` where :meth:`active`, the sampler moves the sample ``n_guide_steps``
    times along ``scale_at(posterior variance of t) * gradients(x, t)[1]`` and re-imposes
    the conditioning after each move.
    """

    n_guide_steps: int

    def active(self, t: int) -> bool: ...

    def scale_at(self, posterior_variance: torch.Tensor) -> torch.Tensor: ...

    def gradients(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``(B,)`` of ``x (B, H, D)`` at step ``t`` and their gradient ``(B, H, D)``."""
        ...


def sample_windows(
    model: nn.Module,
    scheduler: DDPMScheduler,
    values: torch.Tensor,
    fixed: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    guide: Guide | None = None,
) -> torch.Tensor:
    """Denoise Gaussian noise into windows ``(B, H, D)`` (normalised units).

    Args:
        model: denoiser ``(x (B, H, D), t (B,)) -> (B, H, D)``, in eval mode.
        scheduler: walks ``scheduler.timesteps`` (set them with ``set_timesteps``).
        values: ``(B, H, D)`` the fixed values (e.g. from :func:`state_values`).
        fixed: ``(H, D)`` bool inpainting mask, re-imposed after every step.
        generator: source of the initial and per-step noise (on ``values``' device).
        guide: optional :class:`Guide` applied before every reverse step where it is active.
    """
    # Lines 1-2: start from N(0, I) with the condition imposed.
    x = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    x = impose(x, fixed, values)
    for t in scheduler.timesteps.tolist():
        if guide is not None and guide.active(t):
            step_size = guide.scale_at(scheduler.posterior_variance(t))
            for _ in range(guide.n_guide_steps):
                _, gradient = guide.gradients(x, t)
                x = impose(x + step_size * gradient, fixed, values)
        steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        with torch.no_grad():
            output = model(x, steps)
        # Lines 4-5: one ancestral step; line 6: re-impose the current state.
        x = impose(scheduler.step(output, t, x, generator=generator).prev_sample, fixed, values)
    return x


class TrajectoryGenerator:
    """Samples plans ``(B, H, D)`` in the data's units from raw current observations.

    Args:
        model: trained denoiser (usually the EMA weights).
        scheduler: its scheduler.
        normalizer: the ``(D,)`` normaliser the model was trained with.
        obs_dim: observation size; the rest of ``D`` is the action.
    """

    def __init__(
        self, model: nn.Module, scheduler: DDPMScheduler, normalizer: Normalizer, obs_dim: int
    ) -> None:
        self.model, self.scheduler, self.normalizer = model, scheduler, normalizer
        self.obs_dim = obs_dim
        self.horizon: int = model.horizon
        self.act_dim = normalizer.dim - obs_dim
        self.fixed = state_mask(self.horizon, obs_dim, self.act_dim)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sample(
        self,
        observations: np.ndarray | torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        guide: Guide | None = None,
    ) -> torch.Tensor:
        """``(B, obs_dim)`` raw observations -> ``(B, H, D)`` raw windows starting there."""
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations (B, {self.obs_dim}), got {tuple(obs.shape)}")
        obs = self.normalizer.slice(0, self.obs_dim).normalize(obs)
        self.model.eval()
        values = state_values(obs, self.horizon, self.act_dim)
        x = sample_windows(
            self.model,
            self.scheduler,
            values,
            self.fixed.to(self.device),
            generator=generator,
            guide=guide,
        )
        return self.normalizer.unnormalize(x)
