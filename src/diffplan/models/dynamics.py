"""One-step models of the environment, learned from the dataset's transitions.

* :class:`InverseDynamics` ``(s_t, s_{t+1}) -> a_t`` (Decision Diffuser): derives the
  action that links two planned states, instead of executing the planned action.
* :class:`ForwardDynamics` ``(s_t, a_t) -> s_{t+1}``: checks whether a plan's states
  follow from its actions (plan selection by consistency).

Both work in the normalised units of the windows they were trained on: inputs and
outputs are normalised observation / action rows.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden`` with Mish, then a linear output."""
    if layers < 1 or hidden < 1:
        raise ValueError(f"an MLP needs layers >= 1 and hidden >= 1, got {layers}, {hidden}")
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.Mish()]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, out_dim))


class InverseDynamics(nn.Module):
    """``(obs (B, obs_dim), next_obs (B, obs_dim)) -> action (B, act_dim)``, normalised."""

    def __init__(self, obs_dim: int, act_dim: int, *, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(2 * obs_dim, act_dim, hidden, layers)

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, next_obs], dim=-1))


class ForwardDynamics(nn.Module):
    """``(obs (B, obs_dim), action (B, act_dim)) -> next_obs (B, obs_dim)``, normalised.

    The network predicts the change ``next_obs - obs``; the residual is added here.
    """

    def __init__(self, obs_dim: int, act_dim: int, *, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(obs_dim + act_dim, obs_dim, hidden, layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + self.net(torch.cat([obs, action], dim=-1))


DynamicsKind = Literal["inverse", "forward"]
DYNAMICS: dict[str, type[nn.Module]] = {"inverse": InverseDynamics, "forward": ForwardDynamics}


def transition_loss(
    net: nn.Module, kind: DynamicsKind, pairs: torch.Tensor, obs_dim: int
) -> torch.Tensor:
    """MSE of a ``kind`` model on normalised two-row windows ``pairs (B, 2, D)``
    (``[s_t | a_t]`` then ``[s_{t+1} | a_{t+1}]``): inverse predicts ``a_t``, forward
    ``s_{t+1}``."""
    obs, action, next_obs = pairs[:, 0, :obs_dim], pairs[:, 0, obs_dim:], pairs[:, 1, :obs_dim]
    if kind == "inverse":
        return ((net(obs, next_obs) - action) ** 2).mean()
    return ((net(obs, action) - next_obs) ** 2).mean()
