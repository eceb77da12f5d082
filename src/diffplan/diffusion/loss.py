"""The denoising loss of Algorithm 1.1 (one training step's objective)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.masks import impose


def denoising_loss(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    valid: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    fixed: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted DDPM loss of ``model`` on clean windows ``x0 (B, H, D)``.

    Args:
        model: the denoiser ``(x_t (B, H, D), t (B,)) -> (B, H, D)``.
        valid: ``(B, H)`` bool, True on real (unpadded) rows; padded rows don't count.
        t: ``(B,)`` diffusion steps in ``[0, T_d)`` (line 5 of Algorithm 1.1).
        noise: ``(B, H, D)`` standard Gaussian noise (line 6).
        fixed: ``(H, D)`` inpainting mask; those entries are kept noiseless in ``x_t``
            (line 8) and excluded from the loss.
        weights: ``(H, D)`` per-entry loss weights.

    Returns the scalar mean over all ``B * H * D`` entries of ``weight * error ** 2``.
    """
    # Lines 7-8: noise the window (eq. 4 of Ho et al.), keep the current state clean.
    x_t = impose(scheduler.add_noise(x0, noise, t), fixed, x0)
    # Line 9: regress the network's output on its target (x0 or the noise).
    error = (model(x_t, t) - scheduler.target(x0, noise)) ** 2
    entry_weights = weights * ~fixed * valid[:, :, None]
    return (error * entry_weights).mean()


def value_loss(
    model: nn.Module,
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    target: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    fixed: torch.Tensor,
) -> torch.Tensor:
    """MSE of ``model(x_t, t) (B,)`` against normalised value targets ``(B,)``, on windows
    noised like the diffusion model's inputs (``x0``, ``noise (B, H, D)``, ``t (B,)``)."""
    x_t = impose(scheduler.add_noise(x0, noise, t), fixed, x0)
    return ((model(x_t, t) - target) ** 2).mean()
