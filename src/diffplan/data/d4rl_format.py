"""D4RL-layout HDF5 files: flat arrays of transitions, split into episodes here.

Layout (one row per transition, ``N`` rows)::

    observations (N, obs_dim)   actions (N, act_dim)   rewards (N,)
    terminals (N,)              timeouts (N,)          next_observations (N, obs_dim), optional

An episode ends at a row with ``terminals`` or ``timeouts`` set (and at the file's
end). Old files without ``timeouts`` are split on ``terminals`` and on
discontinuities, i.e. where ``next_observations[i] != observations[i + 1]``;
without ``next_observations`` either, only terminals split. The final
observation of an episode is ``next_observations`` of its last row when
present; otherwise the episode's last row is dropped and its observation
serves as the final one.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from diffplan.atomic import atomic_path
from diffplan.data.episodes import DatasetError, TrajectoryDataset, make_episode
from diffplan.envs import make_env

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


def read_d4rl_hdf5(path: str | os.PathLike, *, env_id: str | None = None) -> TrajectoryDataset:
    """Read a D4RL-layout file. ``env_id`` (e.g. ``Walker2d-v5``, from the command line) is
    recorded, and the data's dims must fit its environment."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such D4RL HDF5 file")
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in REQUIRED_KEYS if not isinstance(file.get(key), h5py.Dataset)]
            if missing:
                raise DatasetError(
                    f"{path}: not a D4RL-layout file: missing {', '.join(missing)} "
                    f"(found {', '.join(sorted(file.keys()))}; groups do not count)"
                )
            arrays = {key: file[key][()] for key in file if isinstance(file[key], h5py.Dataset)}
    except OSError as error:
        raise DatasetError(f"{path}: unreadable or truncated HDF5 file ({error})") from None

    observations, actions = arrays["observations"], arrays["actions"]
    rewards = arrays["rewards"].reshape(-1)
    terminals = arrays["terminals"].reshape(-1).astype(bool)
    rows = len(observations)
    if rows == 0 or observations.ndim != 2 or actions.ndim != 2:
        raise DatasetError(
            f"{path}: observations {observations.shape} and actions {actions.shape} must be "
            "non-empty (rows, dim) arrays"
        )
    for key in ("actions", "rewards", "terminals", "timeouts", "next_observations"):
        if key in arrays and len(arrays[key]) != rows:
            raise DatasetError(f"{path}: {key} has {len(arrays[key])} rows, observations {rows}")
    next_observations = arrays.get("next_observations")
    if "timeouts" in arrays:
        timeouts = arrays["timeouts"].reshape(-1).astype(bool)
    elif next_observations is not None:
        timeouts = np.zeros(rows, bool)
        timeouts[:-1] = np.any(next_observations[:-1] != observations[1:], axis=-1)
        timeouts &= ~terminals
    else:
        timeouts = np.zeros(rows, bool)
    timeouts[-1] = timeouts[-1] or not terminals[-1]  # the file's end cuts the last episode

    ends = np.flatnonzero(terminals | timeouts) + 1
    episodes, start = [], 0
    for end in ends:
        if next_observations is not None:
            obs = np.concatenate([observations[start:end], next_observations[end - 1 : end]])
            last = end
        else:  # the last row's observation becomes the final one; its action is dropped
            obs, last = observations[start:end], end - 1
        if last > start:
            terminations, truncations = np.zeros(last - start, bool), np.zeros(last - start, bool)
            terminations[-1], truncations[-1] = terminals[end - 1], timeouts[end - 1]
            episodes.append(
                make_episode(
                    obs,
                    actions[start:last],
                    rewards[start:last],
                    terminations,
                    truncations,
                    id=len(episodes),
                )
            )
        start = end
    source = {"format": "d4rl", "path": str(path)}
    dataset = TrajectoryDataset(episodes, env_id=env_id, source=source, name=str(path))
    if env_id is not None:
        env = make_env(env_id)
        dataset.check_env(env.observation_space.shape, env.action_space.shape)
        env.close()
    return dataset


def write_d4rl_hdf5(dataset: TrajectoryDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as a D4RL-layout file (with ``timeouts`` and ``next_observations``)."""
    path = Path(path)
    columns = {
        "observations": [e.observations[:-1] for e in dataset],
        "next_observations": [e.observations[1:] for e in dataset],
        "actions": [e.actions for e in dataset],
        "rewards": [e.rewards for e in dataset],
        "terminals": [e.terminations for e in dataset],
        "timeouts": [
            e.truncations | ~e.terminations & (np.arange(len(e)) == len(e) - 1) for e in dataset
        ],
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        for key, parts in columns.items():
            file.create_dataset(key, data=np.concatenate(parts))
    return path
