"""Value guidance (Diffuser's ``ValueGuide``): steer denoising toward high-value windows.

At each denoising step ``t >= t_stopgrad`` the sampler applies, ``n_guide_steps`` times,

    x <- x + scale * s_t * grad_x r_phi(x, t)        then re-imposes the current state,

where ``s_t`` is the gradient scaling: ``1`` (``"none"``), the posterior variance
``beta_tilde_t`` (``"variance"``, jannerm/diffuser's default) or its square root
``sqrt(beta_tilde_t)`` (``"std"``, the ``exp(0.5 * log variance)`` of other implementations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

GradientScaling = Literal["none", "variance", "std"]


@dataclass
class GuideConfig:
    """Options of value guidance (defaults: the original Diffuser's locomotion setting)."""

    scale: float = 0.1
    """kappa, the step size along the value gradient."""
    n_guide_steps: int = 2
    """Gradient steps per denoising step (0: none; the value network then only chooses among
    the candidates, which scored higher at H = 32, docs/RESULTS.md)."""
    gradient_scaling: GradientScaling = "variance"
    """Multiply the gradient by the posterior variance, its square root, or nothing."""
    t_stopgrad: int = 2
    """No guidance at the last denoising steps t < t_stopgrad (t counts down to 0)."""

    def __post_init__(self) -> None:
        if self.gradient_scaling not in get_args(GradientScaling):
            raise ValueError(
                f"unknown gradient scaling {self.gradient_scaling!r}; "
                f"choose one of {get_args(GradientScaling)}"
            )
        if self.n_guide_steps < 0 or self.t_stopgrad < 0:
            raise ValueError("n_guide_steps and t_stopgrad must be >= 0")


class ValueGuide:
    """Gradients of a value network ``r_phi(x (B, H, D), t (B,)) -> (B,)`` for the sampler."""

    def __init__(self, value_net: nn.Module, config: GuideConfig | None = None) -> None:
        self.value_net = value_net.eval()
        self.config = config or GuideConfig()

    @property
    def n_guide_steps(self) -> int:
        return self.config.n_guide_steps

    def active(self, t: int) -> bool:
        """Whether to guide at denoising step ``t``."""
        return self.config.n_guide_steps > 0 and t >= self.config.t_stopgrad

    def scale_at(self, posterior_variance: torch.Tensor) -> torch.Tensor:
        """``scale * s_t`` for the step whose posterior variance is given."""
        kind = self.config.gradient_scaling
        factor = {
            "none": torch.ones_like(posterior_variance),
            "variance": posterior_variance,
            "std": posterior_variance.sqrt(),
        }[kind]
        return self.config.scale * factor

    def gradients(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``(B,)`` of ``x (B, H, D)`` at step ``t`` and their gradient ``(B, H, D)``."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            values = self.value_net(x, steps)
            (grad,) = torch.autograd.grad(values.sum(), x)
        return values.detach(), grad
