"""DDPM scheduler (Ho et al. 2020), kept apart from the network and the sampling loop.

Diffusion steps are 0-indexed: ``t = 0 .. T-1`` here is step ``t + 1`` of the
report's Algorithms 1.1/1.2 (``t = 1 .. T_d``). Equation numbers cite Ho et al.
The scheduler owns the float32 buffers; move it with :meth:`DDPMScheduler.to`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from diffplan.diffusion.schedules import ScheduleKind, make_betas

PredictionType = Literal["x0", "epsilon"]


@dataclass(frozen=True)
class StepOutput:
    """One reverse step: ``prev_sample`` is ``x_{t-1}``, ``pred_original_sample`` the
    model's estimate of ``x_0``; both ``(B, H, D)``."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDPMScheduler:
    """Forward noising and ancestral reverse steps of a DDPM.

    Args:
        num_train_timesteps: ``T_d``, the length of the diffusion chain (Diffuser: 20).
        schedule: noise schedule, ``"cosine"`` or ``"linear"``.
        prediction_type: what the network outputs: the clean window ``"x0"`` (Diffuser's
            locomotion setting) or the noise ``"epsilon"`` (the report's Algorithm 1.1).
        clip_sample: if set, clip the predicted ``x_0`` to ``[-clip_sample, clip_sample]``.
    """

    def __init__(
        self,
        num_train_timesteps: int = 20,
        *,
        schedule: ScheduleKind = "cosine",
        prediction_type: PredictionType = "x0",
        clip_sample: float | None = None,
    ) -> None:
        if prediction_type not in get_args(PredictionType):
            choices = get_args(PredictionType)
            raise ValueError(f"unknown prediction {prediction_type!r}; choose one of {choices}")
        if clip_sample is not None and clip_sample <= 0:
            raise ValueError(f"clip_sample must be positive or None, got {clip_sample}")
        self.num_train_timesteps = num_train_timesteps
        self.schedule: ScheduleKind = schedule
        self.prediction_type: PredictionType = prediction_type
        self.clip_sample = clip_sample
        betas = make_betas(schedule, num_train_timesteps)  # float64
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.betas = betas.float()
        self.alphas_cumprod = alphas_cumprod.float()
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1)
        self._step = 1

    def to(self, device: torch.device | str) -> DDPMScheduler:
        """Move the schedule's buffers to ``device`` (in place); returns ``self``."""
        self.betas = self.betas.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    def set_timesteps(self, num_inference_steps: int | None = None) -> None:
        """Use ``num_inference_steps`` evenly strided steps (default: all ``T_d``).

        ``self.timesteps`` is then the descending ``(n,)`` sequence the sampler walks.
        """
        n = num_inference_steps or self.num_train_timesteps
        if not 1 <= n <= self.num_train_timesteps or self.num_train_timesteps % n:
            raise ValueError(
                f"num_inference_steps must divide T_d = {self.num_train_timesteps}, got {n}"
            )
        self._step = self.num_train_timesteps // n
        self.timesteps = torch.arange(self.num_train_timesteps - 1, -1, -self._step)

    def _alpha_bar_prev(self, t: int) -> torch.Tensor:
        prev = t - self._step
        return self.alphas_cumprod[prev] if prev >= 0 else self.alphas_cumprod.new_tensor(1.0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample ``q(x_t | x_0)`` (eq. 4): ``sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps``.

        ``x0``, ``noise``: ``(B, ...)``; ``t``: ``(B,)`` int steps in ``[0, T_d)``.
        """
        alpha_bar = self.alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output: ``x0`` or ``noise``."""
        return x0 if self.prediction_type == "x0" else noise

    def posterior_variance(self, t: int) -> torch.Tensor:
        """``beta_tilde_t = (1 - a_bar_{t-1}) / (1 - a_bar_t) * beta_t`` (eq. 7), a scalar."""
        alpha_bar, alpha_bar_prev = self.alphas_cumprod[t], self._alpha_bar_prev(t)
        return (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        sample: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """Sample ``x_{t-1} ~ p(x_{t-1} | x_t)`` from the network's output at step ``t``."""
        # 1. alphas and betas of this (possibly strided) step.
        alpha_bar, alpha_bar_prev = self.alphas_cumprod[t], self._alpha_bar_prev(t)
        beta = 1 - alpha_bar / alpha_bar_prev
        # 2. predicted x_0: given, or from the predicted noise by inverting eq. 4.
        if self.prediction_type == "x0":
            x0 = model_output
        else:
            x0 = (sample - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        # 3. mean of the posterior q(x_{t-1} | x_t, x_0) (eq. 7).
        coef_x0 = alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)
        coef_xt = (1 - beta).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
        mean = coef_x0 * x0 + coef_xt * sample
        # 4. add noise with the posterior variance (eq. 7), except at the final step.
        if t - self._step < 0:
            return StepOutput(mean, x0)
        noise = torch.randn(
            sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
        )
        return StepOutput(mean + self.posterior_variance(t).sqrt() * noise, x0)
