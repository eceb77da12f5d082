"""DDPM noise process (Ho et al. 2020) and three reverse-time samplers over it.

Diffusion steps are 0-indexed: ``t = 0 .. T-1`` here is step ``t + 1`` of the
report's Algorithms 1.1/1.2 (``t = 1 .. T_d``). Equation numbers cite Ho et al.
The scheduler is stateless between calls; it owns the float32 buffers (move them
with :meth:`DDPMScheduler.to`).

Samplers (``step(..., method=)``), each from step ``t`` to an earlier step ``prev_t``
(``-1``: the clean window), so any descending subsequence of ``0 .. T-1`` is a chain:

- ``"ddpm"``: ancestral sampling with the posterior of eq. 7 (the report's Algorithm 1.2).
- ``"ddim"``: Song et al. 2021, eq. 12; ``eta = 0`` is deterministic, ``eta = 1`` is ``"ddpm"``.
- ``"dpm-solver++"``: Lu et al. 2022, the 2M multistep data-prediction solver; its first
  step (no history) is ``"ddim"`` with ``eta = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from diffplan.diffusion.schedules import ScheduleKind, make_betas

PredictionType = Literal["x0", "epsilon"]
SamplerMethod = Literal["ddpm", "ddim", "dpm-solver++"]


@dataclass(frozen=True)
class StepOutput:
    """One reverse step: ``prev_sample`` is ``x_{t-1}``, ``pred_original_sample`` the
    model's estimate of ``x_0``; both ``(B, H, D)``."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDPMScheduler:
    """Forward noising of a DDPM and reverse steps by several samplers (module docstring).

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
        # the same values as Python floats: a sampler's per-step coefficients are scalars,
        # and scalar tensor arithmetic costs a dispatch per operation
        self._alpha_bars: list[float] = self.alphas_cumprod.tolist()

    def to(self, device: torch.device | str) -> DDPMScheduler:
        """Move the schedule's buffers to ``device`` (in place); returns ``self``."""
        self.betas = self.betas.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    def timesteps(self, num_steps: int | None = None, *, start: int | None = None) -> torch.Tensor:
        """The descending ``(n,)`` chain of ``num_steps`` steps from ``start`` to 0.

        Defaults: every step from ``T_d - 1``. Steps are evenly spaced and rounded, so
        ``timesteps(5)`` is ``[19, 14, 10, 5, 0]`` for ``T_d = 20``.
        """
        start = self.num_train_timesteps - 1 if start is None else start
        if not 0 <= start < self.num_train_timesteps:
            raise ValueError(f"start must be in 0..{self.num_train_timesteps - 1}, got {start}")
        count = start + 1 if num_steps is None else num_steps
        if not 1 <= count <= start + 1:
            raise ValueError(f"a chain from step {start} has 1..{start + 1} steps, got {num_steps}")
        if count == 1:
            return torch.tensor([start])
        return torch.linspace(start, 0, count, dtype=torch.float64).round().long()

    def alpha_bar(self, t: int) -> torch.Tensor:
        """``a_bar_t`` as a scalar tensor; ``1`` for ``t = -1`` (the clean window)."""
        return self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod.new_tensor(1.0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample ``q(x_t | x_0)`` (eq. 4): ``sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps``.

        ``x0``, ``noise``: ``(B, ...)``; ``t``: ``(B,)`` int steps in ``[0, T_d)``.
        """
        alpha_bar = self.alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output: ``x0`` or ``noise``."""
        return x0 if self.prediction_type == "x0" else noise

    def posterior_variance(self, t: int, prev_t: int | None = None) -> torch.Tensor:
        """``beta_tilde = (1 - a_bar_prev) / (1 - a_bar_t) * (1 - a_bar_t / a_bar_prev)``.

        Eq. 7 for the jump ``t -> prev_t`` (default ``t - 1``), a scalar.
        """
        alpha_bar, alpha_bar_prev = (
            self.alpha_bar(t),
            self.alpha_bar(t - 1 if prev_t is None else prev_t),
        )
        return (1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)

    def predict_x0(self, model_output: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """The network's estimate of ``x_0`` ``(B, H, D)`` (clipped if configured)."""
        if self.prediction_type == "x0":
            x0 = model_output
        else:  # invert eq. 4
            alpha_bar = self.alpha_bar(t)
            x0 = (sample - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return x0

    def posterior_mean(
        self, x0: torch.Tensor, sample: torch.Tensor, t: int, prev_t: int
    ) -> torch.Tensor:
        """Mean ``(B, H, D)`` of ``q(x_prev | x_t = sample, x0)`` for the jump ``t -> prev_t``
        (DDPM eq. 7; ``prev_t = -1``: the clean window, where the mean is ``x0``)."""
        alpha_bar, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(prev_t)
        beta = 1 - alpha_bar / alpha_bar_prev
        coef_x0 = alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)
        coef_xt = (1 - beta).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
        return coef_x0 * x0 + coef_xt * sample

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        sample: torch.Tensor,
        *,
        prev_t: int | None = None,
        method: SamplerMethod = "ddpm",
        eta: float = 0.0,
        previous: tuple[torch.Tensor, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One reverse step ``x_t -> x_{prev_t}`` (default ``prev_t = t - 1``).

        Args:
            model_output: the network's output at ``(sample, t)``, ``(B, H, D)``.
            method: the sampler (module docstring); ``eta`` is DDIM's noise scale.
            previous: ``(x0 estimate, its step)`` of the last step, for ``"dpm-solver++"``'s
                second-order update; ``None`` at a chain's first step.
            generator: source of the noise of ``"ddpm"`` and of ``"ddim"`` with ``eta > 0``.
        """
        if method not in get_args(SamplerMethod):
            raise ValueError(f"unknown sampler {method!r}; choose one of {get_args(SamplerMethod)}")
        prev_t = t - 1 if prev_t is None else prev_t
        x0 = self.predict_x0(model_output, t, sample)
        if prev_t < 0:  # the last step returns the estimate of the clean window
            return StepOutput(x0, x0)
        alpha_bar, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(prev_t)
        if method == "dpm-solver++":
            return StepOutput(self._dpm_solver_step(x0, t, prev_t, sample, previous), x0)
        variance = self.posterior_variance(t, prev_t)
        if method == "ddpm":
            # mean of the posterior q(x_{prev} | x_t, x_0) (eq. 7), then its noise.
            mean, sigma = self.posterior_mean(x0, sample, t, prev_t), variance.sqrt()
        else:  # DDIM eq. 12: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z
            epsilon = (sample - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
            sigma = eta * variance.sqrt()
            direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt()
            mean = alpha_bar_prev.sqrt() * x0 + direction * epsilon
            if eta == 0:
                return StepOutput(mean, x0)
        noise = torch.randn(
            sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
        )
        return StepOutput(mean + sigma * noise, x0)

    def _alpha_bar_float(self, t: int) -> float:
        return self._alpha_bars[t] if t >= 0 else 1.0

    def _log_snr_half(self, t: int) -> float:
        """``lambda_t = log(sqrt(a_bar_t) / sqrt(1 - a_bar_t))``."""
        alpha_bar = self._alpha_bar_float(t)
        return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))

    def _dpm_solver_step(
        self,
        x0: torch.Tensor,
        t: int,
        prev_t: int,
        sample: torch.Tensor,
        previous: tuple[torch.Tensor, int] | None,
    ) -> torch.Tensor:
        """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) from ``t`` to ``prev_t >= 0``."""
        lam, lam_prev = self._log_snr_half(t), self._log_snr_half(prev_t)
        h = lam_prev - lam
        alpha_bar, alpha_bar_prev = self._alpha_bar_float(t), self._alpha_bar_float(prev_t)
        # x_prev = (sigma_prev / sigma) x_t - sqrt(a_bar_prev) expm1(-h) D, with D = x0 or
        # the second-order estimate (1 + 1 / 2r) x0 - (1 / 2r) x0_last
        data_weight = -math.sqrt(alpha_bar_prev) * math.expm1(-h)
        x_prev = torch.add(
            sample * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)), x0, alpha=data_weight
        )
        if previous is not None:
            x0_last, t_last = previous
            half_over_ratio = 0.5 * h / (lam - self._log_snr_half(t_last))
            x_prev.add_(x0 - x0_last, alpha=data_weight * half_over_ratio)
        return x_prev
