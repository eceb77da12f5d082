"""A training run's experience, recorded as episodes (D4RL's ``medium-replay`` recipe).

``diffplan train-agent --record`` wraps its environment in :class:`EpisodeRecorder`,
which keeps every episode the learner plays (raw observations before any
normalisation, the actions the environment received, raw rewards, terminations and
truncations apart). At every checkpoint the run writes a *snapshot*::

    OUT/snapshots/STEPS/agent/    # the policy at STEPS environment steps (diffplan agent)
    OUT/snapshots/STEPS/replay/   # episodes that ended since the previous snapshot (Minari)

``replay/`` is written last and atomically, so a snapshot is complete when it exists;
a resumed run rewrites the snapshots after its checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from diffplan.data.episodes import Episode, TrajectoryDataset, make_episode
from diffplan.data.minari_format import read_minari_dir, write_minari_dir


class EpisodeRecorder(gym.Wrapper):
    """Append every finished episode of the wrapped environment to ``sink``."""

    def __init__(self, env: gym.Env, sink: list[Episode]) -> None:
        super().__init__(env)
        self.sink = sink
        self._observations: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self._observations, self._actions, self._rewards = [observation], [], []
        return observation, info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._observations.append(observation)
        self._actions.append(np.asarray(action, np.float32))
        self._rewards.append(float(reward))
        if terminated or truncated:
            steps = len(self._actions)
            terminations, truncations = np.zeros(steps, bool), np.zeros(steps, bool)
            terminations[-1], truncations[-1] = terminated, not terminated
            self.sink.append(
                make_episode(
                    np.stack(self._observations),
                    np.stack(self._actions),
                    np.array(self._rewards),
                    terminations,
                    truncations,
                    id=len(self.sink),
                )
            )
        return observation, reward, terminated, truncated, info


def snapshot_dir(run: Path, steps: int) -> Path:
    """``run/snapshots/STEPS`` (zero-padded so that names sort by steps)."""
    return run / "snapshots" / f"{steps:09d}"


def write_replay(episodes: list[Episode], env_id: str, directory: Path, span: tuple[int, int]):
    """Write the episodes that ended in the environment steps ``span = (after, upto]``."""
    source = {"format": "diffplan", "kind": "train-agent replay", "env_id": env_id,
              "steps_after": span[0], "steps_upto": span[1]}  # fmt: skip
    dataset = TrajectoryDataset(episodes, env_id=env_id, source=source, name=str(directory))
    write_minari_dir(dataset, directory, overwrite=True, dataset_id="diffplan/replay-v0")


def snapshots(run: Path) -> list[tuple[int, Path]]:
    """Complete snapshots of a ``train-agent --record`` run, ``(steps, dir)`` by steps."""
    found = [
        (int(path.name), path)
        for path in (run / "snapshots").glob("*")
        if path.name.isdigit() and (path / "replay").is_dir()
    ]
    if not found:
        raise FileNotFoundError(
            f"{run}: no snapshots; train with `diffplan train-agent --record --out {run}`"
        )
    return sorted(found)


def replay_upto(run: Path, steps: int) -> list[Episode]:
    """Every episode the run played in its first ``steps`` environment steps, in order."""
    return [
        episode
        for at, path in snapshots(run)
        if at <= steps
        for episode in read_minari_dir(path / "replay")
    ]
