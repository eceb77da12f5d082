"""Sampling windows from a trained denoiser (the report's Algorithm 1.2).

:func:`sample_windows` is the core, in normalised units; :class:`TrajectoryGenerator`
is the public wrapper that takes raw observations and returns raw windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, get_args

import numpy as np
import torch
from torch import nn

from diffplan.data.normalizers import Normalizer
from diffplan.diffusion.backends import Backend, build_denoiser, resolve_backend
from diffplan.diffusion.ddpm import DDPMScheduler, SamplerMethod
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


@dataclass
class SamplerConfig:
    """How plans are denoised (defaults: the report's 20 ancestral DDPM steps)."""

    method: SamplerMethod = "ddpm"
    """'ddpm' (ancestral, the report's), 'ddim' (eta = 0: deterministic) or 'dpm-solver++' (2M)."""
    steps: int | None = None
    """Denoising steps, evenly spaced over the chain (default: all T_d)."""
    eta: float = 0.0
    """DDIM's noise scale (0: deterministic, 1: same as DDPM)."""

    def __post_init__(self) -> None:
        if self.method not in get_args(SamplerMethod):
            raise ValueError(
                f"unknown sampler {self.method!r}; choose one of {get_args(SamplerMethod)}"
            )
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")


def sample_windows(
    model: nn.Module,
    scheduler: DDPMScheduler,
    values: torch.Tensor,
    fixed: torch.Tensor,
    *,
    sampler: SamplerConfig | None = None,
    timesteps: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    guide: Guide | None = None,
) -> torch.Tensor:
    """Denoise Gaussian noise (or a noised ``init``) into windows ``(B, H, D)``, normalised.

    Args:
        model: denoiser ``(x (B, H, D), t (B,)) -> (B, H, D)``, in eval mode.
        scheduler: the noise process; ``sampler`` picks the reverse steps.
        values: ``(B, H, D)`` the fixed values (e.g. from :func:`state_values`).
        fixed: ``(H, D)`` bool inpainting mask, re-imposed after every step.
        sampler: method and step count (default: every step of ancestral DDPM).
        timesteps: the descending chain to walk, overriding ``sampler.steps``.
        init: ``(B, H, D)`` windows to start from instead of pure noise (warm start): they
            are noised to ``timesteps[0]`` with ``q(x_t | x_0)`` first.
        generator: source of all noise (on ``values``' device).
        guide: optional :class:`Guide` applied before every reverse step where it is active.
    """
    sampler = sampler or SamplerConfig()
    if timesteps is None:
        timesteps = scheduler.timesteps(sampler.steps)
    chain = timesteps.tolist()
    # Lines 1-2: start from N(0, I) (or q(x_t | init)) with the condition imposed.
    x = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    if init is not None:
        start = torch.full((x.shape[0],), chain[0], device=x.device, dtype=torch.long)
        x = scheduler.add_noise(init, x, start)
    x = impose(x, fixed, values)
    previous: tuple[torch.Tensor, int] | None = None
    for t, prev_t in zip(chain, [*chain[1:], -1], strict=True):
        if guide is not None and guide.active(t):
            step_size = guide.scale_at(scheduler.posterior_variance(t, prev_t))
            for _ in range(guide.n_guide_steps):
                _, gradient = guide.gradients(x, t)
                x = impose(x + step_size * gradient, fixed, values)
        steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        with torch.inference_mode():
            output = model(x, steps)
        # Lines 4-5: one reverse step; line 6: re-impose the current state.
        result = scheduler.step(
            output,
            t,
            x,
            prev_t=prev_t,
            method=sampler.method,
            eta=sampler.eta,
            previous=previous,
            generator=generator,
        )
        x = impose(result.prev_sample, fixed, values)
        previous = (impose(result.pred_original_sample, fixed, values), t)
    return x


class TrajectoryGenerator:
    """Samples plans ``(B, H, D)`` in the data's units from raw current observations.

    Args:
        model: trained denoiser (usually the EMA weights).
        scheduler: its scheduler.
        normalizer: the ``(D,)`` normaliser the model was trained with.
        obs_dim: observation size; the rest of ``D`` is the action.
        backend: how the denoiser runs when sampling (:mod:`diffplan.diffusion.backends`);
            call :meth:`set_backend` again after changing the model's weights.
    """

    def __init__(
        self,
        model: nn.Module,
        scheduler: DDPMScheduler,
        normalizer: Normalizer,
        obs_dim: int,
        *,
        backend: Backend = "eager",
    ) -> None:
        self.model, self.scheduler, self.normalizer = model, scheduler, normalizer
        self.obs_dim = obs_dim
        self.horizon: int = model.horizon
        self.act_dim = normalizer.dim - obs_dim
        self._obs_normalizer = normalizer.slice(0, obs_dim)  # built once: sample is a hot path
        self.fixed = state_mask(self.horizon, obs_dim, self.act_dim)
        self.set_backend(backend)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def set_backend(self, backend: Backend) -> None:
        """(Re)build the denoiser that sampling runs from the model's current weights."""
        self.backend: Backend = resolve_backend(backend, self.device)
        self.denoiser = build_denoiser(self.model, self.backend, self.device)

    def timesteps(self, sampler: SamplerConfig, *, start: int | None = None) -> torch.Tensor:
        """The descending chain ``sampler`` walks from ``start`` (default ``T_d - 1``) to 0.

        A full chain refuses more steps than the model's ``T_d``; a shorter one (``start``,
        warm starts) runs all its steps when ``sampler.steps`` exceeds them.
        """
        total = self.scheduler.num_train_timesteps
        if start is None and sampler.steps is not None and sampler.steps > total:
            raise ValueError(
                f"--planning.sampler.steps {sampler.steps} exceeds the model's {total} diffusion "
                f"steps; pass at most {total} (or leave it out to run all of them)"
            )
        first = total - 1 if start is None else start
        steps = None if sampler.steps is None else min(sampler.steps, first + 1)
        return self.scheduler.timesteps(steps, start=start)

    def sample(
        self,
        observations: np.ndarray | torch.Tensor,
        *,
        sampler: SamplerConfig | None = None,
        init: torch.Tensor | None = None,
        start: int | None = None,
        generator: torch.Generator | None = None,
        guide: Guide | None = None,
    ) -> torch.Tensor:
        """``(B, obs_dim)`` raw observations -> ``(B, H, D)`` raw windows starting there.

        With ``init`` (raw ``(B, H, D)`` windows, e.g. the last plans shifted), sampling
        starts from them noised to step ``start`` and runs ``sampler.steps`` steps from there.
        A chain shorter than ``sampler.steps`` runs all its steps.
        """
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations (B, {self.obs_dim}), got {tuple(obs.shape)}")
        obs = self._obs_normalizer.normalize(obs)
        sampler = sampler or SamplerConfig()
        timesteps = self.timesteps(sampler, start=start)
        if init is not None:
            init = self.normalizer.normalize(init.to(self.device))
        values = state_values(obs, self.horizon, self.act_dim)
        x = sample_windows(
            self.denoiser,
            self.scheduler,
            values,
            self.fixed.to(self.device),
            sampler=sampler,
            timesteps=timesteps,
            init=init,
            generator=generator,
            guide=guide,
        )
        return self.normalizer.unnormalize(x)
