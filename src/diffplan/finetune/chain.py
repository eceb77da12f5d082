"""The reverse denoising chain as a stochastic policy with log-probabilities (DPPO's inner MDP).

Each step ``x_t -> x_prev`` of the chain is Gaussian: its mean is the DDPM posterior mean
of ``q(x_prev | x_t, x0)`` (Ho et al. 2020, eq. 7) at the network's estimate of ``x0``, its
std ``max(sqrt(posterior variance of the jump), min_std)``. The floor keeps every step
stochastic (the last step, to the clean window, has no posterior noise) and sets the
exploration. As in :func:`~diffplan.diffusion.sampling.sample_windows`, the current state
(row 0's observation) is imposed before the first step and after every step; those fixed
entries are no part of the policy's action and do not count in its log-probabilities.

A step's log-probability is taken over its *scored* entries (all free ones by default, or
a subset such as the actions the environment runs) and either summed (the joint density)
or averaged, as DPPO does: the mean makes the probability ratio the geometric mean of the
per-entry ratios, so a PPO clip range means the same for a plan of 16 or of 500 entries.
With ``min_std = 0`` the chain is :meth:`DDPMScheduler.step`'s ``"ddpm"`` sampler, draw for
draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.masks import impose

Reduction = Literal["mean", "sum"]


def gaussian_log_prob(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    scored: torch.Tensor,
    reduction: Reduction = "sum",
) -> torch.Tensor:
    """``log N(x; mean, std^2)`` ``(B,)`` of ``x, mean (B, H, D)`` with a scalar ``std``,
    summed (or averaged) over the entries where ``scored (H, D)`` is True."""
    z = (x - mean) / std
    per_entry = -0.5 * z**2 - std.log() - 0.5 * math.log(2 * math.pi)
    total = (per_entry * scored).sum(dim=(-2, -1))
    return total / scored.sum() if reduction == "mean" else total


@dataclass(frozen=True)
class ChainSample:
    """One sampled chain: ``window (B, H, D)`` the clean plan (normalised); ``trajectory
    (B, K + 1, H, D)`` the input of the first fine-tuned step and the output of each
    fine-tuned step (``trajectory[:, -1]`` is ``window``); ``log_probs (B, K)`` of those K
    steps under the sampling network."""

    window: torch.Tensor
    trajectory: torch.Tensor
    log_probs: torch.Tensor


class DenoisingChain:
    """A descending chain of diffusion steps whose last ``finetune_steps`` are the policy.

    Args:
        scheduler: the model's noise process.
        timesteps: the descending ``(n,)`` chain to walk, ending at step 0 (e.g.
            :meth:`DDPMScheduler.timesteps`).
        finetune_steps: ``K``, how many final steps have log-probabilities (``1 .. n``).
        min_std: floor on every step's std (module docstring); ``> 0`` for log-probabilities.
        scored: ``(H, D)`` the entries whose density counts, among the free ones (None: all
            free entries).
        reduction: ``"sum"`` (a step's joint log-density) or ``"mean"`` over its scored
            entries (DPPO).
    """

    def __init__(
        self,
        scheduler: DDPMScheduler,
        timesteps: torch.Tensor,
        *,
        finetune_steps: int,
        min_std: float,
        scored: torch.Tensor | None = None,
        reduction: Reduction = "sum",
    ) -> None:
        self.chain: list[int] = timesteps.tolist()
        if not 1 <= finetune_steps <= len(self.chain):
            raise ValueError(
                f"finetune steps must be in 1..{len(self.chain)} (the chain's denoising "
                f"steps), got {finetune_steps}; lower --chain.finetune-steps"
            )
        if min_std < 0:
            raise ValueError(f"min_std must be >= 0, got {min_std}")
        self.scheduler, self.finetune_steps, self.min_std = scheduler, finetune_steps, min_std
        self.scored, self.reduction = scored, reduction
        self.prev: list[int] = [*self.chain[1:], -1]
        self.stds = [
            scheduler.posterior_variance(t, prev_t).sqrt().clamp(min=min_std)
            for t, prev_t in zip(self.chain, self.prev, strict=True)
        ]
        self.first_finetuned = len(self.chain) - finetune_steps

    def scored_entries(self, fixed: torch.Tensor) -> torch.Tensor:
        """``(H, D)`` the entries that count in the log-probabilities, given ``fixed``."""
        free = ~fixed
        return free if self.scored is None else free & self.scored.to(free.device)

    def mean(self, model: nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
        """Mean ``(B, H, D)`` of step ``index`` of the chain from ``x (B, H, D)``."""
        t = self.chain[index]
        steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x0 = self.scheduler.predict_x0(model(x, steps), t, x)
        return self.scheduler.posterior_mean(x0, x, t, self.prev[index])

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        values: torch.Tensor,
        fixed: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> ChainSample:
        """Run the chain from ``N(0, I)`` with ``values (B, H, D)`` imposed where ``fixed
        (H, D)``; the noise (one draw per step, the last one included) comes from
        ``generator``, on ``values``' device."""
        scored = self.scored_entries(fixed)
        x = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
        x = impose(x, fixed, values)
        trajectory, log_probs = [], []
        for index, std in enumerate(self.stds):
            mean = self.mean(model, x, index)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            new = impose(mean + std * noise, fixed, values)
            if index >= self.first_finetuned:
                if not trajectory:
                    trajectory.append(x)
                trajectory.append(new)
                log_probs.append(gaussian_log_prob(new, mean, std, scored, self.reduction))
            x = new
        return ChainSample(x, torch.stack(trajectory, dim=1), torch.stack(log_probs, dim=1))

    def log_probs(
        self, model: nn.Module, trajectory: torch.Tensor, fixed: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities ``(B, K)`` of the fine-tuned steps of ``trajectory
        (B, K + 1, H, D)`` (from :meth:`sample`) under ``model``, differentiable."""
        scored = self.scored_entries(fixed)
        log_probs = []
        for j in range(self.finetune_steps):
            index = self.first_finetuned + j
            mean = self.mean(model, trajectory[:, j], index)
            std = self.stds[index]
            log_probs.append(
                gaussian_log_prob(trajectory[:, j + 1], mean, std, scored, self.reduction)
            )
        return torch.stack(log_probs, dim=1)
