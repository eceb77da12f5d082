"""``Planner``: load a finished run and act, in two lines (stable-baselines3's ``predict``).

>>> planner = Planner.from_run("runs/main", preset="tracked", k=1)
>>> action, _ = planner.predict(obs)  # (act_dim,) for (obs_dim,); (N, act_dim) for (N, obs_dim)
>>> planner.reset()  # between episodes
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from diffplan.checkpoints.loading import load_diffusion, load_network
from diffplan.data.episodes import DatasetInfo
from diffplan.planning.dynamics import ActionsFromStates
from diffplan.planning.planner import DiffusionPlanner
from diffplan.planning.presets import DEFAULT_PRESET, find_preset, within_task
from diffplan.runtime import DeviceChoice, resolve_device


class Planner:
    """A run's models planning with one preset at window ``k``, for any number of
    environments; :meth:`predict` does the chores, :class:`DiffusionPlanner` the planning."""

    def __init__(self, planner: DiffusionPlanner, env_id: str) -> None:
        self.planner, self.env_id = planner, env_id
        self._num_envs = 0

    @classmethod
    def from_run(
        cls,
        run: str | Path,
        preset: str = DEFAULT_PRESET,
        k: int = 1,
        *,
        guided: bool = False,
        seed: int = 0,
        device: DeviceChoice = "auto",
    ) -> Planner:
        """Load ``run`` (a ``diffplan run`` folder: ``diffusion/``, ``value/``,
        ``inverse-dynamics/``) with its env id, action bounds and backend.

        ``guided``: the preset's guided planner (the value network's choice or guidance).
        """
        run, chosen = Path(run), find_preset(preset)
        planning = chosen.config()
        where = resolve_device(device)
        generator, diffusion = load_diffusion(
            run / "diffusion",
            device=where,
            backend=planning.backend,
            returns=planning.experimental.returns,
        )
        env_id = DatasetInfo(**diffusion.meta.dataset).env_id
        if env_id is None:
            raise ValueError(f"{run}/diffusion: its dataset names no environment to plan in")
        planning = within_task(planning, generator.horizon, env_id)
        inverse = run / "inverse-dynamics"
        chosen.check(inverse if inverse.is_dir() else None)
        space = gym.make(env_id).action_space
        planner = planning.make_planner(
            generator,
            k,
            value_net=load_network(run / "value", "value", device=where).network
            if guided
            else None,
            inverse_dynamics=ActionsFromStates(inverse, device=where)
            if planning.track_states
            else None,
            action_low=space.low,
            action_high=space.high,
            seed=seed,
        )
        return cls(planner, env_id)

    def reset(self) -> None:
        """Forget every plan (call between episodes)."""
        self._num_envs = 0

    def predict(self, observation: np.ndarray) -> tuple[np.ndarray, None]:
        """``(action, None)``: ``(act_dim,)`` for one observation ``(obs_dim,)``, ``(N,
        act_dim)`` for a batch ``(N, obs_dim)``; None stands for stable-baselines3's state."""
        batch = self._batch(observation)
        actions = self.planner.act(batch)
        return (actions[0] if np.ndim(observation) == 1 else actions), None

    def plan(self, observation: np.ndarray) -> np.ndarray:
        """The plans ``(N, H, obs_dim + act_dim)`` (raw units) sampled for ``(N, obs_dim)``
        observations (or ``(H, D)`` for one), for inspection; nothing is executed."""
        plans = self.planner.plan(self._batch(observation)).cpu().numpy()
        return plans[0] if np.ndim(observation) == 1 else plans

    def _batch(self, observation: np.ndarray) -> np.ndarray:
        """``(N, obs_dim)`` float32 from one observation or a batch; starts the episodes
        when the number of environments changes."""
        batch = np.atleast_2d(np.asarray(observation, dtype=np.float32))
        obs_dim = self.planner.generator.obs_dim
        if batch.ndim != 2 or batch.shape[1] != obs_dim:
            raise ValueError(
                f"observations must be ({obs_dim},) or (N, {obs_dim}), got {np.shape(observation)}"
            )
        if len(batch) != self._num_envs:
            self.planner.reset(len(batch))
            self._num_envs = len(batch)
        return batch
