"""Proposal: how a decision's candidate plans are sampled.

Each environment gets ``candidates`` plans ``(H, D)`` from the diffusion model, conditioned
on its observation, denoised by the ``sampler``, with value guidance inside the sampler when
a ``guide`` is given. With a warm start, a replan does not start from pure noise: the
environment's last plan, shifted by the ``k`` rows already executed (its last row repeated
to fill the window), is noised to diffusion step ``WarmStart.step`` and denoised from there
in ``WarmStart.steps`` steps. An environment's first plan is always sampled cold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from diffplan.diffusion.sampling import Guide, SamplerConfig, TrajectoryGenerator


@dataclass
class WarmStart:
    """Replan from the last plan shifted by ``k`` instead of from pure noise."""

    step: int | None = None
    """Diffusion step t the shifted plan is noised to (None: no warm start, every plan cold)."""
    steps: int | None = None
    """Denoising steps of a warm plan, from `step` to 0 (default: the sampler's, at most step+1)."""

    def __post_init__(self) -> None:
        if self.step is not None and self.step < 0:
            raise ValueError(f"warm start step must be >= 0, got {self.step}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"warm start steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class Proposal:
    """How many plans each decision samples per environment, and how."""

    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Denoising method and steps (default: the report's 20 DDPM steps)."""
    candidates: int = 1
    """Plans sampled per environment and decision."""
    guide: Guide | None = None
    """Value guidance applied inside the sampler."""
    warm_start: WarmStart = field(default_factory=WarmStart)
    """Start replans from the last plan (module docstring); default: cold."""

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")

    def check(self, generator: TrajectoryGenerator) -> None:
        """Raise ValueError where the warm start's step is beyond ``generator``'s chain."""
        last_step = generator.scheduler.num_train_timesteps - 1
        if self.warm_start.step is not None and self.warm_start.step > last_step:
            raise ValueError(
                f"warm start step must be in 0..{last_step}, got {self.warm_start.step}"
            )

    def warm_sampler(self) -> SamplerConfig:
        """The sampler of warm plans: ``warm_start.steps`` steps (default: the sampler's)."""
        steps = self.warm_start.steps or self.sampler.steps
        return SamplerConfig(self.sampler.method, steps, self.sampler.eta)

    def sample(
        self,
        generator: TrajectoryGenerator,
        observations: np.ndarray,
        rng: torch.Generator,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(N, obs_dim)`` raw observations -> candidates ``(N, C, H, D)``, raw units.

        ``init``: ``(N, H, D)`` raw windows to warm-start from (needs ``warm_start.step``).
        """
        repeated = np.repeat(observations, self.candidates, axis=0)
        sampler, start = self.sampler, None
        if init is not None:
            start = self.warm_start.step
            if start is None:
                raise ValueError("a warm-started plan needs WarmStart.step")
            sampler = self.warm_sampler()
            init = init.repeat_interleave(self.candidates, dim=0)
        plans = generator.sample(
            repeated, sampler=sampler, init=init, start=start, generator=rng, guide=self.guide
        )
        return plans.reshape(len(observations), self.candidates, *plans.shape[1:])
