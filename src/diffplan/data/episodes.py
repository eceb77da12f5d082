"""Episodes and datasets of episodes, shaped like Minari's ``EpisodeData``.

An episode of ``T`` steps holds ``T + 1`` observations (the last one is the
observation after the final action) and ``T`` actions, rewards, terminations
and truncations. Terminations (the MDP ended, e.g. the walker fell) and
truncations (a time limit cut the episode) are kept apart: only a termination
means "no future reward".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffplan.tasks import find_task


class DatasetError(ValueError):
    """A dataset is unusable; the message names the file, the episode and the problem."""


def reference_scores(env_id: str | None) -> tuple[float | None, float | None]:
    """D4RL (min, max) reference scores of ``env_id``'s task (diffplan/tasks.json) or
    (None, None) for tasks the table lacks."""
    task = find_task(env_id)
    return (None, None) if task is None else (task.ref_min, task.ref_max)


@dataclass(frozen=True)
class Episode:
    """One episode; arrays are numpy, float32 for observations/actions/rewards.

    Shapes: ``observations (T+1, obs_dim)``, ``actions (T, act_dim)``,
    ``rewards (T,)``, ``terminations (T,)`` and ``truncations (T,)`` (bool).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    id: int = 0
    seed: int | None = None

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))

    @property
    def terminated(self) -> bool:
        """True when the episode ended in a terminal state (e.g. a fall)."""
        return bool(len(self) > 0 and self.terminations[-1])

    @property
    def truncated(self) -> bool:
        return bool(len(self) > 0 and self.truncations[-1])

    def validate(self, source: str) -> None:
        """Raise :class:`DatasetError` naming ``source`` and this episode if anything is off."""

        def fail(problem: str) -> DatasetError:
            return DatasetError(f"{source}: episode {self.id}: {problem}")

        obs, act = self.observations, self.actions
        if obs.ndim != 2 or act.ndim != 2:
            raise fail(
                f"observations and actions must be 2-D (steps, dim); got shapes "
                f"{obs.shape} and {act.shape}"
            )
        steps = act.shape[0]
        if steps == 0:
            raise fail("has no steps")
        if obs.shape[0] != steps + 1:
            raise fail(
                f"has {obs.shape[0]} observations for {steps} actions; expected {steps + 1} "
                "(the final observation after the last action is part of an episode)"
            )
        for name in ("rewards", "terminations", "truncations"):
            array = getattr(self, name)
            if array.shape != (steps,):
                raise fail(f"{name} has shape {array.shape}, expected ({steps},)")
        for name in ("observations", "actions", "rewards"):
            array = getattr(self, name)
            bad = ~np.isfinite(array)
            if bad.any():
                step = int(np.argwhere(bad)[0][0])
                raise fail(f"{name} contain NaN or inf (first at step {step}); clean the data")
        ended_early = np.flatnonzero((self.terminations | self.truncations)[:-1])
        if ended_early.size:
            raise fail(
                f"terminates or is truncated at step {int(ended_early[0])} but continues to "
                f"step {steps - 1}; split it into separate episodes"
            )


def make_episode(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminations: np.ndarray | None = None,
    truncations: np.ndarray | None = None,
    *,
    id: int = 0,
    seed: int | None = None,
) -> Episode:
    """Build an :class:`Episode` with canonical dtypes (float32 arrays, bool flags)."""
    steps = len(actions)
    return Episode(
        observations=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float32).reshape(-1),
        terminations=np.zeros(steps, bool)
        if terminations is None
        else np.asarray(terminations, dtype=bool).reshape(-1),
        truncations=np.zeros(steps, bool)
        if truncations is None
        else np.asarray(truncations, dtype=bool).reshape(-1),
        id=id,
        seed=seed,
    )


@dataclass(frozen=True)
class DatasetInfo:
    """Summary and provenance of a :class:`TrajectoryDataset` (JSON-serialisable)."""

    env_id: str | None
    obs_dim: int
    act_dim: int
    num_episodes: int
    num_steps: int
    mean_return: float
    v_rate: float
    """Reward per step: sum of returns / sum of episode lengths."""
    ref_min_score: float | None
    ref_max_score: float | None
    source: dict[str, Any] = field(default_factory=dict)
    """Where the data came from: file, agent hash, noise, seed, versions..."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "num_episodes": self.num_episodes,
            "num_steps": self.num_steps,
            "mean_return": self.mean_return,
            "v_rate": self.v_rate,
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "source": self.source,
        }


class TrajectoryDataset(Sequence[Episode]):
    """An ordered, validated collection of episodes of one environment.

    Args:
        episodes: the episodes; each is validated (shapes, NaN/inf, flags).
        env_id: gymnasium id of the environment that produced them, if known.
        source: provenance (JSON-serialisable), kept in :attr:`info`.
        name: how to refer to the data in error messages (usually the file path).
        reference: the data's own (min, max) reference scores (a Minari dataset's metadata);
            default: the task table's for ``env_id``.
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        *,
        env_id: str | None = None,
        source: dict[str, Any] | None = None,
        name: str = "dataset",
        reference: tuple[float, float] | None = None,
    ) -> None:
        if len(episodes) == 0:
            raise DatasetError(f"{name}: the dataset has no episodes")
        first = episodes[0]
        obs_dim, act_dim = first.observations.shape[-1], first.actions.shape[-1]
        for episode in episodes:
            episode.validate(name)
            if episode.observations.shape[1] != obs_dim or episode.actions.shape[1] != act_dim:
                raise DatasetError(
                    f"{name}: episode {episode.id}: dims (obs {episode.observations.shape[1]}, "
                    f"act {episode.actions.shape[1]}) differ from the first episode's "
                    f"(obs {obs_dim}, act {act_dim})"
                )
        self._episodes = list(episodes)
        self.env_id = env_id
        self.name = name
        self.reference = reference
        self.source = dict(source or {})
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)

    def __len__(self) -> int:
        return len(self._episodes)

    def __getitem__(self, index):  # type: ignore[override]
        return self._episodes[index]

    @property
    def episode_lengths(self) -> np.ndarray:
        """``(num_episodes,)`` int64 steps per episode."""
        return np.array([len(e) for e in self._episodes], dtype=np.int64)

    @property
    def episode_returns(self) -> np.ndarray:
        """``(num_episodes,)`` float64 undiscounted returns."""
        return np.array([e.total_return for e in self._episodes], dtype=np.float64)

    @property
    def info(self) -> DatasetInfo:
        returns, lengths = self.episode_returns, self.episode_lengths
        ref_min, ref_max = self.reference or reference_scores(self.env_id)
        return DatasetInfo(
            env_id=self.env_id,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            num_episodes=len(self),
            num_steps=int(lengths.sum()),
            mean_return=float(returns.mean()),
            v_rate=float(returns.sum() / lengths.sum()),
            ref_min_score=ref_min,
            ref_max_score=ref_max,
            source=self.source,
        )

    def check_env(self, observation_shape: tuple[int, ...], action_shape: tuple[int, ...]) -> None:
        """Raise :class:`DatasetError` if the dims don't fit an environment's spaces."""
        if tuple(observation_shape) != (self.obs_dim,) or tuple(action_shape) != (self.act_dim,):
            raise DatasetError(
                f"{self.name}: data has obs dim {self.obs_dim} and action dim {self.act_dim}, but "
                f"the environment {self.env_id or ''} has observation shape "
                f"{tuple(observation_shape)} and action shape {tuple(action_shape)}; "
                "use a dataset collected in this environment"
            )

    def summary(self) -> str:
        """One human-readable line per key figure."""
        info = self.info
        fell = sum(e.terminated for e in self._episodes)
        lines = [
            f"dataset   {self.name}",
            f"env       {info.env_id}",
            f"dims      obs {info.obs_dim}, act {info.act_dim}",
            f"episodes  {info.num_episodes} ({fell} terminated early)",
            f"steps     {info.num_steps}",
            f"return    {info.mean_return:.1f} ± {float(self.episode_returns.std()):.1f}",
            f"V-rate    {info.v_rate:.4f} reward/step",
        ]
        if info.ref_min_score is not None and info.ref_max_score is not None:
            score = (
                100
                * (info.mean_return - info.ref_min_score)
                / (info.ref_max_score - info.ref_min_score)
            )
            lines.append(f"D4RL      {score:.1f} (normalised score of the data)")
        return "\n".join(lines)


def discounted_returns_to_go(
    rewards: np.ndarray, discount: float, terminal_penalty: float = 0.0
) -> np.ndarray:
    """``(T,)`` discounted sum of rewards from each step to the episode's end.

    ``terminal_penalty`` is added to the final reward (use it only for episodes
    that terminated, not for truncated ones).
    """
    if not 0.0 <= discount <= 1.0 or math.isnan(discount):
        raise ValueError(f"discount must be in [0, 1], got {discount}")
    rewards = rewards.astype(np.float64).copy()
    rewards[-1] += terminal_penalty
    out = np.empty_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + discount * running
        out[t] = running
    return out
