"""Execution: how a plan's rows become the actions that run.

Without an inverse dynamics model the planned actions run. With one, the ``k`` executed
actions are those linking consecutive planned states, ``a_i = f^-1(s_i, s_{i+1})`` with
``s_0`` the real observation (Decision Diffuser). With ``track_states`` the ``s_i`` is the
real observation at every step, not only the first: the planner follows the plan's states
with feedback, ``a_i = f^-1(real s_i, planned s_{i+1})``; a ``gain`` below 1 closes only
that fraction of the gap between the real and the planned state; with a ``reach`` m > 1
(an inverse model trained with ``reach >= m``) each action aims at the planned state m steps
ahead, ``f^-1(real s_i, planned s_{i+m}, m)`` (fewer near the end of the plan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffplan.diffusion.sampling import TrajectoryGenerator
from diffplan.planning.dynamics import ActionsFromStates


@dataclass
class Execution:
    """Planned actions, inverse dynamics open loop, or tracked states; clipped to bounds."""

    inverse_dynamics: ActionsFromStates | None = None
    """Derive the executed actions from the planned states."""
    track_states: bool = False
    """With ``inverse_dynamics``: derive each action from the real current state."""
    gain: float = 1.0
    """With ``track_states``: the fraction of the gap to the planned state each step closes."""
    reach: int = 1
    """With ``track_states``: how many steps ahead each action aims."""
    action_low: np.ndarray | None = None
    """``(act_dim,)`` lower bounds the actions are clipped to."""
    action_high: np.ndarray | None = None
    """``(act_dim,)`` upper bounds."""

    def __post_init__(self) -> None:
        if self.track_states and self.inverse_dynamics is None:
            raise ValueError(
                "tracking the planned states (--planning.track-states) needs an inverse "
                "dynamics model (--inverse-dynamics)"
            )
        if not 0 <= self.gain <= 1:
            raise ValueError(f"tracking gain must be in [0, 1], got {self.gain}")
        if self.gain != 1 and not self.track_states:
            raise ValueError(
                "a tracking gain (--planning.tracking-gain) needs --planning.track-states"
            )
        if self.reach != 1 and not self.track_states:
            raise ValueError(
                "a tracking reach (--planning.tracking-reach) needs --planning.track-states"
            )
        inverse = self.inverse_dynamics
        if inverse is not None and not 1 <= self.reach <= inverse.reach:
            raise ValueError(
                f"tracking reach must be in 1..{inverse.reach} for the inverse model "
                f"{inverse.path}, got {self.reach}; train one with "
                f"`diffplan train-dynamics --kind inverse --reach {self.reach}`"
            )

    def check(self, generator: TrajectoryGenerator) -> None:
        """Raise ValueError where the inverse model's dimensions are not ``generator``'s."""
        if self.inverse_dynamics is not None:
            self.inverse_dynamics.check_dims(generator.obs_dim, generator.act_dim)

    def open_loop(self, plans: torch.Tensor, k: int, obs_dim: int) -> torch.Tensor:
        """The ``k`` actions ``(N, k, act_dim)`` to run from plans ``(N, H, D)`` (raw, the
        first ``obs_dim`` columns states): the planned ones, or with inverse dynamics those
        linking the planned states."""
        if self.inverse_dynamics is None:
            return plans[:, :k, obs_dim:]
        return self.inverse_dynamics(plans[:, : k + 1, :obs_dim])

    def tracked(
        self,
        now: torch.Tensor,
        target: torch.Tensor,
        ahead: np.ndarray,
        here: torch.Tensor | None = None,
    ) -> np.ndarray:
        """``(N, act_dim)``: the actions from the real states ``now (N, obs_dim)`` toward the
        planned states ``target`` that lie ``ahead (N,)`` steps on; with a gain below 1,
        ``here`` is where the plan expected to be now (the gap left partly open)."""
        assert self.inverse_dynamics is not None
        if self.gain < 1:  # close only part of the gap to the plan
            assert here is not None
            target = target + (1 - self.gain) * (now - here)
        return self.inverse_dynamics.toward(now, target, torch.as_tensor(ahead)).numpy()

    def clip(self, actions: np.ndarray) -> np.ndarray:
        """``actions (N, act_dim)`` within the bounds (unchanged without them)."""
        if self.action_low is None or self.action_high is None:
            return actions
        return np.clip(actions, self.action_low, self.action_high)

    def bounds(self) -> list[torch.Tensor | None]:
        """``[low, high]`` as ``(act_dim,)`` tensors (None where unbounded)."""
        return [
            None if bound is None else torch.as_tensor(bound, dtype=torch.float32)
            for bound in (self.action_low, self.action_high)
        ]
