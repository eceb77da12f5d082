"""Classifier-free guidance toward a target return (Decision Diffuser).

A denoiser trained with its return condition randomly dropped is both a conditional
model ``f(x, t, R)`` and an unconditional one ``f(x, t)``. Guidance extrapolates
from the second toward the first,

    output = f(x, t) + w * (f(x, t, R) - f(x, t)),

``w = 0``: unconditional, ``w = 1``: conditional, ``w > 1``: pushed further toward ``R``.
For an ``x0``-predicting model the same combination of ``x0`` predictions is the same
guidance (``x0`` and the noise are affine in each other at a given ``x_t``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ReturnGuidanceConfig:
    """Classifier-free guidance of a return-conditioned model (diffplan train --returns.enabled)."""

    target: float = 0.9
    """Return-to-go to condition on, on the dataset's scale: -1 its lowest window's, 1 its
    highest window's (min-max normalised)."""
    weight: float = 1.2
    """w: 0 plans unconditionally, 1 conditionally, > 1 pushes further toward the target
    (Decision Diffuser's locomotion setting: 1.2)."""


class ClassifierFreeGuidance(nn.Module):
    """A return-conditioned denoiser as a plain ``(x (B, H, D), t (B,)) -> (B, H, D)`` one.

    Args:
        network: a denoiser taking ``(x, t, returns (B,), keep (B,))`` (a
            ``TemporalUnet`` with ``returns_condition``, or its channels-last copy).
        target: the return to condition on, in the network's normalised units.
        weight: ``w`` (module docstring).
    """

    def __init__(self, network: nn.Module, target: float, weight: float) -> None:
        super().__init__()
        if getattr(network, "return_embed", None) is None:
            raise ValueError(
                "classifier-free guidance needs a network trained with return conditioning "
                "(diffplan train --returns.enabled)"
            )
        self.network, self.target, self.weight = network, float(target), float(weight)
        self.horizon, self.transition_dim = network.horizon, network.transition_dim
        self.train(network.training)

    def with_network(self, network: nn.Module) -> ClassifierFreeGuidance:
        """The same guidance around another copy of the network (e.g. a faster graph)."""
        return ClassifierFreeGuidance(network, self.target, self.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        returns = torch.zeros_like(t, dtype=x.dtype) + self.target
        if self.weight == 1.0:
            return self.network(x, t, returns)
        # one batch of 2B: the conditional half, then the unconditional (keep = 0) half
        keep = torch.cat([torch.ones_like(returns), torch.zeros_like(returns)])
        both = self.network(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([returns, returns]), keep
        )
        conditional, unconditional = both[: x.shape[0]], both[x.shape[0] :]
        return unconditional + self.weight * (conditional - unconditional)
