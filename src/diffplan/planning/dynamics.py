"""Trained one-step models at plan time, in raw units (see :mod:`diffplan.models.dynamics`).

* :class:`ActionsFromStates` (inverse dynamics): the actions to execute are derived from
  consecutive planned states instead of read from the plan.
* :class:`ForwardConsistency` (forward dynamics): how far a plan's states stray from what its
  actions would do, or (:meth:`ForwardConsistency.tracking_error`) from where following them
  with inverse-dynamics actions would lead, to prefer consistent candidates.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffplan.checkpoints.loading import load_network


class _OneStepModel:
    """A dynamics checkpoint's network with its observation and action normalisers; calls
    take and return tensors on any device (the network runs on ``device``)."""

    kind: str

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        loaded = load_network(path, self.kind, device=device)
        self.net, meta = loaded.network, loaded.meta
        self.path, self.device = Path(path), torch.device(device)
        self.obs_dim, self.act_dim = meta.dataset["obs_dim"], meta.dataset["act_dim"]
        self.observations = meta.normalizer.slice(0, self.obs_dim)
        self.actions = meta.normalizer.slice(self.obs_dim, self.obs_dim + self.act_dim)

    def check_dims(self, obs_dim: int, act_dim: int) -> None:
        """Refuse a model of another environment than the plans it will read."""
        if (obs_dim, act_dim) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"{self.path} models observations of {self.obs_dim} and actions of "
                f"{self.act_dim} dims, but the plans have {obs_dim} and {act_dim}; train it "
                "on the diffusion model's dataset"
            )


class ActionsFromStates(_OneStepModel):
    """Inverse dynamics: ``states (B, n + 1, obs_dim) -> actions (B, n, act_dim)``, raw units.

    A model trained with ``reach`` M > 1 also gives, by :meth:`toward`, the action on the
    way to a state up to M steps ahead.
    """

    kind = "inverse-dynamics"

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        super().__init__(path, device=device)
        self.reach: int = getattr(self.net, "reach", 1)

    @torch.inference_mode()
    def __call__(self, states: torch.Tensor, ahead: torch.Tensor | None = None) -> torch.Tensor:
        """``ahead (B, n)``: steps from each state to the one after it (default 1)."""
        normed = self.observations.normalize(states.to(self.device))
        steps = None if ahead is None else ahead.to(self.device)
        actions = self.net(normed[:, :-1], normed[:, 1:], steps)
        return self.actions.unnormalize(actions).to(states.device)

    def toward(self, state: torch.Tensor, goal: torch.Tensor, ahead: torch.Tensor) -> torch.Tensor:
        """``state (B, obs_dim)``, ``goal (B, obs_dim)`` to reach ``ahead (B,)`` steps later
        (1 .. reach) -> the action to take now ``(B, act_dim)``, raw units."""
        if int(ahead.max()) > self.reach or int(ahead.min()) < 1:
            raise ValueError(
                f"{self.path} was trained to aim 1 to {self.reach} steps ahead, not "
                f"{int(ahead.min())} to {int(ahead.max())}; train it with --reach"
            )
        return self(torch.stack([state, goal], dim=1), ahead[:, None])[:, 0]


class ForwardConsistency(_OneStepModel):
    """Forward dynamics: ``plans (B, H, D), rows n -> (B,)`` mean squared error (normalised
    units) between planned states ``s_1 .. s_n`` and the model's prediction from the
    previous planned state and action."""

    kind = "forward-dynamics"

    @torch.inference_mode()
    def __call__(self, plans: torch.Tensor, rows: int) -> torch.Tensor:
        window = plans[:, : rows + 1].to(self.device)
        states = self.observations.normalize(window[:, :, : self.obs_dim])
        actions = self.actions.normalize(window[:, :rows, self.obs_dim :])
        predicted = self.net(states[:, :-1], actions)
        return ((predicted - states[:, 1:]) ** 2).mean(dim=(1, 2)).to(plans.device)

    @torch.inference_mode()
    def tracking_error(
        self,
        plans: torch.Tensor,
        rows: int,
        inverse_dynamics: ActionsFromStates,
        action_low: torch.Tensor | None = None,
        action_high: torch.Tensor | None = None,
        tracking_gain: float = 1.0,
    ) -> torch.Tensor:
        """``plans (B, H, D), rows n -> (B,)``: follow the planned states ``s_1 .. s_n`` in
        this model as a tracking planner would in the environment (closed loop: each action
        ``f^-1(reached state, next planned state)``, clipped to the bounds; with a
        ``tracking_gain`` g < 1 the target is shifted by ``(1 - g)`` times the gap to the
        planned state, as the planner does), and return the mean squared distance
        (normalised units) between the states reached and the planned ones. One-step errors
        miss drift that compounds; this error includes it."""
        planned = plans[:, : rows + 1, : self.obs_dim].to(self.device)
        targets = planned[:, 1:]
        state = plans[:, 0, : self.obs_dim].to(self.device)
        normed = self.observations.normalize(state)
        bounded = action_low is not None and action_high is not None
        if bounded:  # the inverse model returns actions on the states' device, this one's
            action_low, action_high = action_low.to(self.device), action_high.to(self.device)
        reached = []
        for row in range(rows):
            target = targets[:, row] + (1 - tracking_gain) * (state - planned[:, row])
            action = inverse_dynamics(torch.stack([state, target], dim=1))[:, 0]
            if bounded:
                action = torch.clamp(action, action_low, action_high)
            normed = self.net(normed, self.actions.normalize(action))
            state = self.observations.unnormalize(normed)  # the inverse model takes raw states
            reached.append(normed)
        distance = torch.stack(reached, dim=1) - self.observations.normalize(targets)
        return (distance**2).mean(dim=(1, 2)).to(plans.device)
