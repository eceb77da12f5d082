"""Receding-horizon planning with a trajectory diffusion model.

For each environment the planner samples a plan ``(H, D)`` conditioned on the
current observation, executes the first ``k`` actions of it (the *effective
window*), then plans again from the real observation it reached. ``k = 1``
replans at every step; ``k = H - 1`` uses every action of a plan but the last.
The report's "window size k" is this ``k``: the number of planned actions run
before the next plan (its H = 8 model was evaluated at k = 1 .. 7).

With ``num_candidates > 1`` it samples that many plans per environment and keeps
one: the value network's best; with a forward dynamics model (``consistency``) the
most consistent one (the smallest error between each planned state and the model's
prediction from the previous planned state and action, over the ``k`` transitions
that will run, or ``consistency_rows``), or, with both, the value network's best among the
``consistency_keep`` fraction of most consistent candidates. With ``simulate_tracking`` the
error is that of following the plan's states in the forward model with inverse-dynamics
actions, closed loop, as ``track_states`` does in the environment. With ``average`` and
neither, it runs the candidates' mean plan (row by row), which cancels the sampler's noise
around the model's expected plan; the conditioned first state stays exact.

With an inverse dynamics model, the ``k`` executed actions are not the planned ones
but those linking consecutive planned states, ``a_i = f^-1(s_i, s_{i+1})`` with
``s_0`` the real observation (Decision Diffuser). With ``track_states`` the ``s_i`` is
the real observation at every step, not only the first: the planner then follows the
plan's states with feedback, ``a_i = f^-1(real s_i, planned s_{i+1})``; with a
``tracking_reach`` m > 1 (an inverse model trained with ``reach >= m``) each action aims at
the planned state m steps ahead, ``f^-1(real s_i, planned s_{i+m}, m)`` (fewer near the end
of the plan).

With ``temporal_ensemble = n > 1`` (``k = 1`` only) each step's target is the mean of
what the last ``n`` plans predicted for it (:mod:`diffplan.planning.smoothing`): the plan
made ``j`` steps ago contributes its row ``j + 1`` state (tracked) or row ``j`` action.

With a warm start, a replan does not start from pure noise: the environment's last
plan, shifted by the ``k`` rows already executed (its last row repeated to fill the
window), is noised to diffusion step ``WarmStart.step`` and denoised from there in
``WarmStart.steps`` steps. An environment's first plan is always sampled cold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from diffplan.diffusion.backends import build_denoiser
from diffplan.diffusion.sampling import Guide, SamplerConfig, TrajectoryGenerator
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.smoothing import TemporalEnsemble


@dataclass
class WarmStart:
    """Replan from the last plan shifted by ``k`` instead of from pure noise."""

    step: int | None = None
    """Diffusion step t the shifted plan is noised to (None: no warm start, every plan cold)."""
    steps: int | None = None
    """Denoising steps of a warm plan, from `step` to 0 (default: the sampler's, at most step+1)."""

    def __post_init__(self) -> None:
        if self.step is not None and self.step < 0:
            raise ValueError(f"warm start step must be >= 0, got {self.step}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"warm start steps must be >= 1, got {self.steps}")


class DiffusionPlanner:
    """Plans for a batch of environments; :meth:`act` does the chores, the sampler the maths.

    Args:
        generator: the trained diffusion model wrapped as a :class:`TrajectoryGenerator`.
        effective_window: ``k``, actions executed per plan, ``1 <= k <= H - 1``.
        num_candidates: plans sampled per environment and decision.
        average: run the mean of the ``num_candidates`` plans instead of choosing one.
        value_net: rates candidates, ``(x (B, H, D) normalised, t (B,)) -> (B,)``.
        consistency: forward dynamics error of candidates; ``num_candidates > 1`` needs it
            or ``value_net``.
        consistency_keep: with both, the fraction of most consistent candidates the value
            network chooses from.
        consistency_rows: transitions of each candidate checked for consistency (default
            ``effective_window``, the ones that will run).
        simulate_tracking: check consistency by following the plan in the forward model
            with inverse-dynamics actions (needs ``track_states``).
        inverse_dynamics: derive the executed actions from the planned states.
        track_states: with ``inverse_dynamics``, derive each action from the real current
            state and the next planned state (module docstring).
        tracking_gain: with ``track_states``, the fraction of the gap to the planned state
            each step closes, in ``[0, 1]`` (module docstring).
        tracking_reach: with ``track_states``, how many steps ahead each action aims
            (module docstring); needs an inverse model trained with at least that reach.
        guide: optional value guidance applied inside the sampler.
        sampler: denoising method and steps (default: the report's 20 DDPM steps).
        warm_start: start replans from the last plan (module docstring); default: cold.
        temporal_ensemble: average each step's target over this many of the last plans
            (module docstring); needs ``effective_window = 1``.
        ensemble_decay: weight of the plan made ``j`` steps ago in that mean, ``exp(-m j)``.
        action_low, action_high: ``(act_dim,)`` bounds the actions are clipped to.
        seed: seeds the sampler's noise.
    """

    def __init__(
        self,
        generator: TrajectoryGenerator,
        *,
        effective_window: int = 1,
        num_candidates: int = 1,
        average: bool = False,
        value_net: nn.Module | None = None,
        consistency: ForwardConsistency | None = None,
        consistency_keep: float = 0.25,
        consistency_rows: int | None = None,
        simulate_tracking: bool = False,
        inverse_dynamics: ActionsFromStates | None = None,
        track_states: bool = False,
        tracking_gain: float = 1.0,
        tracking_reach: int = 1,
        guide: Guide | None = None,
        sampler: SamplerConfig | None = None,
        warm_start: WarmStart | None = None,
        temporal_ensemble: int = 1,
        ensemble_decay: float = 0.0,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        horizon = generator.horizon
        if not 1 <= effective_window <= horizon - 1:
            raise ValueError(
                f"effective window must be in 1..{horizon - 1} for horizon {horizon}, "
                f"got {effective_window}"
            )
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        if average and (value_net is not None or consistency is not None):
            raise ValueError(
                "averaging the candidates excludes choosing one (by value or consistency)"
            )
        if num_candidates > 1 and value_net is None and consistency is None and not average:
            raise ValueError(
                "several candidates need a value network or a forward dynamics model to "
                "choose one, or averaging"
            )
        if track_states and inverse_dynamics is None:
            raise ValueError(
                "tracking the planned states (--planning.track-states) needs an inverse "
                "dynamics model (--inverse-dynamics)"
            )
        if not 0 <= tracking_gain <= 1:
            raise ValueError(f"tracking gain must be in [0, 1], got {tracking_gain}")
        if tracking_gain != 1 and not track_states:
            raise ValueError(
                "a tracking gain (--planning.tracking-gain) needs --planning.track-states"
            )
        if tracking_reach != 1 and not (track_states and inverse_dynamics is not None):
            raise ValueError(
                "a tracking reach (--planning.tracking-reach) needs --planning.track-states"
            )
        if inverse_dynamics is not None and not 1 <= tracking_reach <= inverse_dynamics.reach:
            raise ValueError(
                f"tracking reach must be in 1..{inverse_dynamics.reach} for the inverse model "
                f"{inverse_dynamics.path}, got {tracking_reach}; train one with "
                f"`diffplan train-dynamics --kind inverse --reach {tracking_reach}`"
            )
        if tracking_reach > 1 and simulate_tracking:
            raise ValueError(
                "simulated tracking follows plans one step at a time: it does not take a "
                "tracking reach above 1"
            )
        if temporal_ensemble > 1 and effective_window != 1:
            raise ValueError("temporal ensembling averages plans made every step: it needs k = 1")
        if temporal_ensemble > 1 and inverse_dynamics is not None and not track_states:
            raise ValueError(
                "temporal ensembling averages planned actions or tracked states; with "
                "--inverse-dynamics it needs --planning.track-states"
            )
        if not 0 < consistency_keep <= 1:
            raise ValueError(f"consistency_keep must be in (0, 1], got {consistency_keep}")
        if consistency_rows is not None and not 1 <= consistency_rows <= horizon - 1:
            raise ValueError(
                f"consistency rows must be in 1..{horizon - 1} for horizon {horizon}, "
                f"got {consistency_rows}"
            )
        if simulate_tracking and not (track_states and consistency is not None):
            raise ValueError(
                "simulating the tracking (--planning.consistency.simulate-tracking) needs a "
                "forward dynamics model (--dynamics) and --planning.track-states"
            )
        for model in (consistency, inverse_dynamics):
            if model is not None:
                model.check_dims(generator.obs_dim, generator.act_dim)
        self.warm_start = warm_start or WarmStart()
        last_step = generator.scheduler.num_train_timesteps - 1
        if self.warm_start.step is not None and self.warm_start.step > last_step:
            raise ValueError(
                f"warm start step must be in 0..{last_step}, got {self.warm_start.step}"
            )
        self.generator, self.guide = generator, guide
        # Candidates are scored without gradients, so on the generator's (fast) backend.
        self._score = (
            build_denoiser(value_net, generator.backend, generator.device)
            if value_net is not None and num_candidates > 1
            else None
        )
        self.consistency, self.consistency_keep = consistency, consistency_keep
        self.consistency_rows = consistency_rows or effective_window
        self.simulate_tracking = simulate_tracking
        self.inverse_dynamics, self.track_states = inverse_dynamics, track_states
        self.tracking_gain, self.tracking_reach = tracking_gain, tracking_reach
        self.sampler = sampler or SamplerConfig()
        self.effective_window, self.num_candidates = effective_window, num_candidates
        self.average, self.temporal_ensemble = average, temporal_ensemble
        self.ensemble = TemporalEnsemble(temporal_ensemble, ensemble_decay, horizon)
        self.action_low, self.action_high = action_low, action_high
        self.torch_generator = torch.Generator(device=generator.device).manual_seed(seed)
        self.plans_made = 0
        self.reset(0)

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

        ``init``: ``(N, H, D)`` raw windows to warm-start from (needs ``warm_start.step``).
        """
        count, candidates = len(observations), self.num_candidates
        repeated = np.repeat(observations, candidates, axis=0)
        sampler, start = self.sampler, None
        if init is not None:
            start = self.warm_start.step
            if start is None:
                raise ValueError("a warm-started plan needs WarmStart.step")
            sampler = self.warm_sampler()
            init = init.repeat_interleave(candidates, dim=0)
        plans = self.generator.sample(
            repeated,
            sampler=sampler,
            init=init,
            start=start,
            generator=self.torch_generator,
            guide=self.guide,
        )
        self.plans_made += 1
        if candidates == 1:
            return plans
        grouped = plans.reshape(count, candidates, *plans.shape[1:])
        if self.average:
            return grouped.mean(dim=1)
        best = self.select(grouped)
        return plans[best + torch.arange(count, device=best.device) * candidates]

    def select(self, candidates: torch.Tensor) -> torch.Tensor:
        """Index ``(N,)`` of the plan to keep among ``candidates (N, C, H, D)`` (raw units)."""
        count, num = candidates.shape[:2]
        flat = candidates.flatten(0, 1)
        scores = torch.zeros(count, num, device=flat.device)
        if self._score is not None:
            normed = self.generator.normalizer.normalize(flat)
            with torch.inference_mode():
                steps = torch.zeros(len(normed), dtype=torch.long, device=normed.device)
                scores = self._score(normed, steps).reshape(count, num)
        if self.consistency is not None:
            errors = self._consistency_errors(flat).reshape(count, num)
            if self._score is None:
                return errors.argmin(dim=1)
            # only the most consistent candidates may win on value
            keep = max(1, math.ceil(self.consistency_keep * num))
            cutoff = errors.kthvalue(keep, dim=1, keepdim=True).values
            scores = scores.masked_fill(errors > cutoff, -math.inf)
        return scores.argmax(dim=1)

    def _consistency_errors(self, plans: torch.Tensor) -> torch.Tensor:
        """``(B,)`` forward-model errors of ``plans (B, H, D)`` (raw units)."""
        assert self.consistency is not None
        if not self.simulate_tracking:
            return self.consistency(plans, self.consistency_rows)
        assert self.inverse_dynamics is not None
        bounds = [
            None if bound is None else torch.as_tensor(bound, dtype=torch.float32)
            for bound in (self.action_low, self.action_high)
        ]
        return self.consistency.tracking_error(
            plans, self.consistency_rows, self.inverse_dynamics, *bounds, self.tracking_gain
        )

    def warm_sampler(self) -> SamplerConfig:
        """The sampler of warm plans: ``warm_start.steps`` steps (default: the sampler's)."""
        steps = self.warm_start.steps or self.sampler.steps
        return SamplerConfig(self.sampler.method, steps, self.sampler.eta)

    def _replan(self, observations: np.ndarray, env_ids: np.ndarray) -> torch.Tensor:
        """Plans ``(N, H, D)`` for ``env_ids``: warm where they have a last plan, else cold."""
        plans = torch.empty(len(env_ids), *self._plans.shape[1:])
        warm = self._planned[env_ids] & (self.warm_start.step is not None)
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

    def executed_actions(self, plans: torch.Tensor) -> torch.Tensor:
        """The ``k`` actions ``(N, k, act_dim)`` to run from plans ``(N, H, D)`` (raw): the
        planned ones, or with inverse dynamics those linking the planned states."""
        k, obs_dim = self.effective_window, self.generator.obs_dim
        if self.inverse_dynamics is None:
            return plans[:, :k, obs_dim:]
        return self.inverse_dynamics(plans[:, : k + 1, :obs_dim])

    def act(self, observations: np.ndarray, env_ids: np.ndarray | None = None) -> np.ndarray:
        """Next action ``(N, act_dim)`` for environments ``env_ids`` observing ``(N, obs_dim)``.

        Environments whose last plan has run ``k`` actions are replanned, together.
        """
        env_ids = np.arange(len(observations)) if env_ids is None else np.asarray(env_ids)
        stale = self._next[env_ids] >= self.effective_window
        if stale.any():
            plans = self._replan(np.asarray(observations)[stale], env_ids[stale])
            self.last_plans = plans
            self._next[env_ids[stale]] = 0
            if self.temporal_ensemble > 1:
                self.ensemble.remember(plans, env_ids[stale])
            elif not self.track_states:  # tracking derives each action when it runs
                self._actions[env_ids[stale]] = self.executed_actions(plans).numpy()
        obs_dim = self.generator.obs_dim
        if self.track_states:
            assert self.inverse_dynamics is not None
            now = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
            ahead = self._steps_aimed_ahead(env_ids)
            target = self._planned_state(env_ids, ahead)
            if self.tracking_gain < 1:  # close only part of the gap to the plan
                gap = now - self._planned_state(env_ids, ahead=0)
                target = target + (1 - self.tracking_gain) * gap
            chosen = self.inverse_dynamics.toward(now, target, torch.as_tensor(ahead)).numpy()
        elif self.temporal_ensemble > 1:
            chosen = self.ensemble.mean(env_ids, row_offset=0)[:, obs_dim:].numpy()
        else:
            chosen = self._actions[env_ids, self._next[env_ids]]
        self._next[env_ids] += 1
        if self.action_low is not None and self.action_high is not None:
            chosen = np.clip(chosen, self.action_low, self.action_high)
        return chosen

    def _steps_aimed_ahead(self, env_ids: np.ndarray) -> np.ndarray:
        """``(N,)``: how many steps ahead each environment's tracked action aims: the
        tracking reach, or fewer where the plan (every plan of the ensemble) ends sooner."""
        if self.temporal_ensemble > 1:
            furthest = np.full(len(env_ids), self.generator.horizon - self.temporal_ensemble)
        else:
            furthest = self.generator.horizon - 1 - self._next[env_ids]
        return np.minimum(self.tracking_reach, furthest)

    def _planned_state(self, env_ids: np.ndarray, ahead: int | np.ndarray) -> torch.Tensor:
        """``(N, obs_dim)``: the state planned ``ahead`` (one number or ``(N,)``) steps after
        the current one (with the temporal ensemble: the mean of the last plans' predictions
        for it)."""
        obs_dim = self.generator.obs_dim
        if self.temporal_ensemble > 1:
            return self.ensemble.mean(env_ids, row_offset=ahead)[:, :obs_dim]
        return self._plans[env_ids, self._next[env_ids] + ahead, :obs_dim]
