"""Closed-loop episodes: any controller, a batch of environments stepped together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from diffplan.evaluation.metrics import EpisodeResult


class Controller(Protocol):
    """What :func:`run_episodes` drives (e.g. :class:`~diffplan.planning.DiffusionPlanner`)."""

    def reset(self, num_envs: int) -> None: ...

    def act(self, observations: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        """``(N, obs_dim)`` observations of environments ``env_ids`` -> ``(N, act_dim)``."""
        ...


def run_episodes(
    controller: Controller,
    env_id: str,
    seeds: Sequence[int],
    *,
    progress: bool = False,
    description: str = "episodes",
) -> list[EpisodeResult]:
    """Run one episode per seed, all side by side in a synchronous vector env.

    Each step, the controller is asked for the actions of the environments whose
    episode is still running; finished ones wait (and are not counted) until all end.
    """
    envs = gym.make_vec(env_id, num_envs=len(seeds), vectorization_mode="sync")
    max_steps = envs.spec.max_episode_steps if envs.spec else None
    controller.reset(len(seeds))
    observations, _ = envs.reset(seed=list(seeds))
    returns = np.zeros(len(seeds))
    lengths = np.zeros(len(seeds), dtype=np.int64)
    fell = np.zeros(len(seeds), dtype=bool)
    running = np.ones(len(seeds), dtype=bool)
    actions = np.zeros(envs.action_space.shape, dtype=np.float32)
    bar = tqdm(total=max_steps, desc=description, unit="step", disable=not progress, leave=False)
    try:
        while running.any():
            ids = np.flatnonzero(running)
            actions[ids] = controller.act(observations[ids], ids)
            observations, rewards, terminated, truncated, _ = envs.step(actions)
            returns[ids] += rewards[ids]
            lengths[ids] += 1
            fell[ids] = terminated[ids]
            running[ids] = ~(terminated[ids] | truncated[ids])
            bar.update(1)
    finally:
        bar.close()
        envs.close()
    return [
        EpisodeResult(seed=int(s), total_return=float(r), length=int(n), fell=bool(f))
        for s, r, n, f in zip(seeds, returns, lengths, fell, strict=True)
    ]
