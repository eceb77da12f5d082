"""One-step models of the environment, learned from the dataset's transitions.

* :class:`InverseDynamics` ``(s_t, s_{t+1}) -> a_t`` (Decision Diffuser): derives the
  action that links two planned states, instead of executing the planned action. Trained
  with ``reach = M > 1`` it also takes ``m <= M`` and a state ``s_{t+m}``: the action at ``t``
  on the way to the state ``m`` steps later.
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
    """``(obs (B, obs_dim), next_obs (B, obs_dim)) -> action (B, act_dim)``, normalised.

    With ``reach > 1``, ``next_obs`` may be the state ``ahead (B,)`` steps later (1 to
    ``reach``; default 1), which the network takes as one more input.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, *, hidden: int = 256, layers: int = 3, reach: int = 1
    ) -> None:
        super().__init__()
        if reach < 1:
            raise ValueError(f"an inverse model's reach must be >= 1, got {reach}")
        self.obs_dim, self.act_dim, self.reach = obs_dim, act_dim, reach
        self.net = mlp(2 * obs_dim + (reach > 1), act_dim, hidden, layers)

    def forward(
        self, obs: torch.Tensor, next_obs: torch.Tensor, ahead: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = [obs, next_obs]
        if self.reach > 1:
            steps = torch.ones(obs.shape[:-1], device=obs.device) if ahead is None else ahead
            inputs.append(steps.to(obs.dtype)[..., None] / self.reach)
        return self.net(torch.cat(inputs, dim=-1))


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
    net: nn.Module,
    kind: DynamicsKind,
    windows: torch.Tensor,
    obs_dim: int,
    goal_noise: float = 0.0,
) -> torch.Tensor:
    """MSE of a ``kind`` model on normalised windows ``(B, n + 1, D)`` of rows ``[s_t | a_t]``:
    forward predicts ``s_{t+1}`` (n = 1); inverse predicts ``a_t`` from ``s_{t+1}`` (n = 1)
    or, with reach ``n > 1``, from ``s_{t+m}`` for ``m`` drawn uniformly from ``1 .. n``;
    the inverse model's target state gets Gaussian noise of std ``goal_noise``."""
    obs, action = windows[:, 0, :obs_dim], windows[:, 0, obs_dim:]
    if kind == "forward":
        return ((net(obs, action) - windows[:, 1, :obs_dim]) ** 2).mean()
    if windows.shape[1] == 2:  # one step ahead: no draw, as before reaches existed
        goal, ahead = windows[:, 1, :obs_dim], None
    else:
        ahead = torch.randint(1, windows.shape[1], (len(windows),), device=windows.device)
        goal = windows[torch.arange(len(windows), device=windows.device), ahead, :obs_dim]
    if goal_noise > 0:
        goal = goal + goal_noise * torch.randn_like(goal)
    return ((net(obs, goal, ahead) - action) ** 2).mean()
