"""Receding-horizon planning with a trajectory diffusion model.

For each environment the planner samples a plan ``(H, D)`` conditioned on the
current observation, executes the first ``k`` actions of it (the *effective
window*), then plans again from the real observation it reached. ``k = 1``
replans at every step; ``k = H - 1`` uses every action of a plan but the last.
The report's "window size k" is this ``k``: the number of planned actions run
before the next plan (its H = 8 model was evaluated at k = 1 .. 7).

A decision is four parts, each with its own config and one job:

- :class:`~diffplan.planning.proposal.Proposal`: how many candidate plans are sampled,
  how (sampler, value guidance) and from where (cold, or warm from the last plan);
- :class:`~diffplan.planning.selection.Selection`: which candidate runs (one plan, their
  mean, the value network's choice, the forward model's most consistent);
- :class:`~diffplan.planning.execution.Execution`: how the plan's rows become actions
  (planned actions, inverse dynamics open loop, tracked states), clipped to bounds;
- :class:`~diffplan.planning.smoothing.Smoothing`: at ``k = 1``, each step's target is the
  mean of what the last ``n`` plans predicted for it: the plan made ``j`` steps ago
  contributes its row ``j + 1`` state (tracked) or row ``j`` action.

The planner checks that the parts fit together and keeps each environment's last plan.
"""

from __future__ import annotations

import numpy as np
import torch

from diffplan.diffusion.sampling import TrajectoryGenerator
from diffplan.planning.execution import Execution
from diffplan.planning.proposal import Proposal
from diffplan.planning.selection import SIMULATED_TRACKING_NEEDS, Selection
from diffplan.planning.smoothing import Smoothing


class DiffusionPlanner:
    """Plans for a batch of environments; :meth:`act` does the chores, the parts the rest.

    Args:
        generator: the trained diffusion model wrapped as a :class:`TrajectoryGenerator`.
        effective_window: ``k``, actions executed per plan, ``1 <= k <= H - 1``.
        proposal: how candidates are sampled (default: one, by the report's 20 DDPM steps).
        selection: which candidate runs (default: the one plan).
        execution: how plans become actions (default: the planned actions, unclipped).
        smoothing: the temporal ensemble (default: none).
        seed: seeds the sampler's noise.
    """

    def __init__(
        self,
        generator: TrajectoryGenerator,
        *,
        effective_window: int = 1,
        proposal: Proposal | None = None,
        selection: Selection | None = None,
        execution: Execution | None = None,
        smoothing: Smoothing | None = None,
        seed: int = 0,
    ) -> None:
        self.generator, self.effective_window = generator, effective_window
        self.proposal = proposal or Proposal()
        self.selection = selection or Selection()
        self.execution = execution or Execution()
        self.smoothing = smoothing or Smoothing()
        self._check_parts_fit()
        self.ensemble = self.smoothing.ensemble(generator.horizon)
        self.torch_generator = torch.Generator(device=generator.device).manual_seed(seed)
        self.plans_made = 0
        self.reset(0)

    def _check_parts_fit(self) -> None:
        """Raise ValueError for parts that cannot work together or with the generator."""
        horizon, k = self.generator.horizon, self.effective_window
        selection, execution = self.selection, self.execution
        if not 1 <= k <= horizon - 1:
            raise ValueError(
                f"effective window must be in 1..{horizon - 1} for horizon {horizon}, got {k}"
            )
        if self.proposal.candidates > 1 and selection.rule == "first":
            raise ValueError(
                "several candidates need a value network or a forward dynamics model to "
                "choose one, or their mean"
            )
        if selection.rows is not None and selection.rows > horizon - 1:
            raise ValueError(
                f"consistency rows must be in 1..{horizon - 1} for horizon {horizon}, "
                f"got {selection.rows}"
            )
        if selection.simulate_tracking and not execution.track_states:
            raise ValueError(SIMULATED_TRACKING_NEEDS)
        if selection.simulate_tracking and execution.reach > 1:
            raise ValueError(
                "simulated tracking follows plans one step at a time: it does not take a "
                "tracking reach above 1"
            )
        if self.smoothing.plans > 1 and k != 1:
            raise ValueError("temporal ensembling averages plans made every step: it needs k = 1")
        tracked = execution.track_states
        if self.smoothing.plans > 1 and execution.inverse_dynamics is not None and not tracked:
            raise ValueError(
                "temporal ensembling averages planned actions or tracked states; with "
                "--inverse-dynamics it needs --planning.track-states"
            )
        for part in (self.proposal, selection, execution):
            part.check(self.generator)

    def reset(self, num_envs: int) -> None:
        """Forget all plans; prepare for ``num_envs`` environments."""
        self._actions = np.zeros(
            (num_envs, self.effective_window, self.generator.act_dim), np.float32
        )
        self._next = np.full(num_envs, self.effective_window)  # index of the next action to run
        shape = (num_envs, self.generator.horizon, self.generator.normalizer.dim)
        self._plans = torch.zeros(shape)  # raw: each environment's last plan
        self._planned = np.zeros(num_envs, dtype=bool)
        self.ensemble.reset(num_envs, shape[1:])
        self.last_plans: torch.Tensor | None = None

    def plan(self, observations: np.ndarray, init: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, obs_dim)`` raw observations -> the chosen plans ``(N, H, D)``, raw units.

        ``init``: ``(N, H, D)`` raw windows to warm-start from (needs a warm start step).
        """
        candidates = self.proposal.sample(self.generator, observations, self.torch_generator, init)
        self.plans_made += 1
        return self.selection.choose(
            candidates, self.generator.normalizer, self.effective_window, self.execution
        )

    def _replan(self, observations: np.ndarray, env_ids: np.ndarray) -> torch.Tensor:
        """Plans ``(N, H, D)`` for ``env_ids``: warm where they have a last plan, else cold."""
        plans = torch.empty(len(env_ids), *self._plans.shape[1:])
        warm = self._planned[env_ids] & (self.proposal.warm_start.step is not None)
        if warm.any():
            # the rows not yet executed, then the last row repeated for the k executed ones
            k = self.effective_window
            last = self._plans[env_ids[warm]]
            shifted = torch.cat([last[:, k:], last[:, -1:].expand(-1, k, -1)], dim=1)
            plans[torch.as_tensor(warm)] = self.plan(observations[warm], init=shifted).cpu()
        if (~warm).any():
            plans[torch.as_tensor(~warm)] = self.plan(observations[~warm]).cpu()
        self._plans[env_ids] = plans
        self._planned[env_ids] = True
        return plans

    def act(self, observations: np.ndarray, env_ids: np.ndarray | None = None) -> np.ndarray:
        """Next action ``(N, act_dim)`` for environments ``env_ids`` observing ``(N, obs_dim)``.

        Environments whose last plan has run ``k`` actions are replanned, together.
        """
        env_ids = np.arange(len(observations)) if env_ids is None else np.asarray(env_ids)
        execution, obs_dim = self.execution, self.generator.obs_dim
        stale = self._next[env_ids] >= self.effective_window
        if stale.any():
            plans = self._replan(np.asarray(observations)[stale], env_ids[stale])
            self.last_plans = plans
            self._next[env_ids[stale]] = 0
            if self.ensemble.size > 1:
                self.ensemble.remember(plans, env_ids[stale])
            elif not execution.track_states:  # tracking derives each action when it runs
                k = self.effective_window
                self._actions[env_ids[stale]] = execution.open_loop(plans, k, obs_dim).numpy()
        if execution.track_states:
            now = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
            ahead = self._steps_aimed_ahead(env_ids)
            target = self._planned_state(env_ids, ahead)
            here = self._planned_state(env_ids, ahead=0) if execution.gain < 1 else None
            chosen = execution.tracked(now, target, ahead, here)
        elif self.ensemble.size > 1:
            chosen = self.ensemble.mean(env_ids, row_offset=0)[:, obs_dim:].numpy()
        else:
            chosen = self._actions[env_ids, self._next[env_ids]]
        self._next[env_ids] += 1
        return execution.clip(chosen)

    def _steps_aimed_ahead(self, env_ids: np.ndarray) -> np.ndarray:
        """``(N,)``: how many steps ahead each environment's tracked action aims: the
        tracking reach, or fewer where the plan (every plan of the ensemble) ends sooner."""
        if self.ensemble.size > 1:
            furthest = np.full(len(env_ids), self.generator.horizon - self.ensemble.size)
        else:
            furthest = self.generator.horizon - 1 - self._next[env_ids]
        return np.minimum(self.execution.reach, furthest)

    def _planned_state(self, env_ids: np.ndarray, ahead: int | np.ndarray) -> torch.Tensor:
        """``(N, obs_dim)``: the state planned ``ahead`` (one number or ``(N,)``) steps after
        the current one (with the temporal ensemble: the mean of the last plans' predictions
        for it)."""
        obs_dim = self.generator.obs_dim
        if self.ensemble.size > 1:
            return self.ensemble.mean(env_ids, row_offset=ahead)[:, :obs_dim]
        return self._plans[env_ids, self._next[env_ids] + ahead, :obs_dim]
