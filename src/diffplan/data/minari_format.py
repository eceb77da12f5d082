"""Datasets in Minari's on-disk layout, read and written through the ``minari`` library.

A diffplan dataset directory ``DIR`` is laid out as Minari lays out one dataset::

    DIR/data/metadata.json     # Minari metadata; diffplan's provenance under "diffplan"
    DIR/data/main_data.hdf5    # groups episode_0, episode_1, ... (observations, actions, ...)

so ``minari.MinariDataset("DIR/data")`` reads it, and a ``DIR`` placed at
``$MINARI_DATASETS_PATH/<dataset_id>`` is found by ``minari.load_dataset``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from diffplan.atomic import atomic_directory
from diffplan.data.episodes import DatasetError, Episode, TrajectoryDataset, make_episode
from diffplan.envs import checked_env_id

VERSION = re.compile(r"-v\d+$")  # a directory named like an id keeps one version suffix
METADATA_KEY = "diffplan"  # where diffplan's provenance lives in Minari's metadata.json


def _data_dir(path: Path) -> Path:
    """Accept either ``DIR`` or ``DIR/data``."""
    return path / "data" if (path / "data" / "metadata.json").exists() else path


def is_minari_dir(path: str | os.PathLike) -> bool:
    return (_data_dir(Path(path)) / "metadata.json").exists()


def _episode_from_minari(data: Any) -> Episode:
    return make_episode(
        data.observations,
        data.actions,
        data.rewards,
        data.terminations,
        data.truncations,
        id=int(data.id),
    )


def _from_minari_dataset(minari_dataset: Any, name: str) -> TrajectoryDataset:
    """Convert a ``minari.MinariDataset`` (Box observation and action spaces)."""
    for space_name in ("observation_space", "action_space"):
        space = getattr(minari_dataset, space_name)
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise DatasetError(f"{name}: diffplan needs a flat Box {space_name}, got {space}")
    episodes = [_episode_from_minari(e) for e in minari_dataset.iterate_episodes()]
    metadata = minari_dataset.storage.metadata
    env_spec = minari_dataset.spec.env_spec
    source = dict(metadata.get(METADATA_KEY) or {})
    source.setdefault("format", "minari")
    source.setdefault("dataset_id", metadata.get("dataset_id"))
    source["path"] = name
    env_id = env_spec.id if env_spec is not None else None
    if env_id is not None:
        checked_env_id(env_id, Path(name) / "data" / "metadata.json")
    dataset = TrajectoryDataset(
        episodes, env_id=env_id, source=source, name=name, reference=_reference(metadata, name)
    )
    dataset.check_env(minari_dataset.observation_space.shape, minari_dataset.action_space.shape)
    return dataset


def _reference(metadata: dict[str, Any], name: str) -> tuple[float, float] | None:
    """Minari's ``ref_min_score`` and ``ref_max_score`` of a dataset, if it has both."""
    low, high = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if low is None and high is None:
        return None
    if not all(isinstance(x, int | float) and np.isfinite(x) for x in (low, high)) or low >= high:
        raise DatasetError(
            f"{name}: metadata ref_min_score {low!r} and ref_max_score {high!r} must be finite "
            "numbers, min below max"
        )
    return float(low), float(high)


def read_minari_dir(path: str | os.PathLike) -> TrajectoryDataset:
    """Read a dataset stored in Minari's layout at ``path`` (``DIR`` or ``DIR/data``)."""
    import minari

    data_dir = _data_dir(Path(path).resolve())
    if not (data_dir / "metadata.json").exists():
        raise FileNotFoundError(
            f"{path}: no Minari dataset here (expected {data_dir / 'metadata.json'}); "
            "create one with `diffplan collect` or pass a Minari dataset id"
        )
    try:
        minari_dataset = minari.MinariDataset(data_dir)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"{data_dir}: unreadable or truncated Minari dataset ({error})"
        ) from None
    try:
        return _from_minari_dataset(minari_dataset, str(path))
    except (OSError, KeyError) as error:
        raise DatasetError(
            f"{data_dir}: unreadable or truncated Minari dataset ({error})"
        ) from None


def load_minari_id(dataset_id: str, *, download: bool = True) -> TrajectoryDataset:
    """Load a Minari dataset by id (e.g. ``mujoco/walker2d/expert-v0``).

    Looks in the local Minari root (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)
    and, if ``download``, fetches it from the Minari server when missing.
    """
    import minari
    from minari.storage.datasets_root_dir import get_dataset_path

    local = get_dataset_path(dataset_id) / "data"
    if local.exists():
        return read_minari_dir(local)
    if not download:
        raise FileNotFoundError(f"Minari dataset {dataset_id!r} is not in {local.parent}")
    if importlib.util.find_spec("huggingface_hub") is None:
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} is not stored locally ({local.parent}); downloading "
            "it needs Minari's Hugging Face extra: pip install 'minari[hf]'"
        )
    try:
        minari.download_dataset(dataset_id)
    except Exception as error:  # minari raises many kinds: network, unknown id, auth
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} is not stored locally ({local.parent}) and could not "
            f"be downloaded ({type(error).__name__}: {error}). Offline? Download it elsewhere "
            "with `minari download` and copy it there, or set MINARI_DATASETS_PATH."
        ) from None
    return read_minari_dir(local)


def minari_dataset_id(path: str | os.PathLike, dataset_id: str | None = None) -> str:
    """``dataset_id`` checked against Minari's rule (``(namespace/)name-vN``), or by default
    ``diffplan/<directory name>-v0`` with characters Minari refuses replaced by ``-``."""
    from minari.dataset.minari_dataset import parse_dataset_id

    name = re.sub(r"[^\w-]+", "-", Path(path).resolve().name).strip("-") or "dataset"
    chosen = dataset_id or f"diffplan/{VERSION.sub('', name)}-v0"
    try:
        parse_dataset_id(chosen)
    except ValueError:
        raise ValueError(
            f"--dataset-id {chosen!r} is not a Minari dataset id; use (namespace/)name-vN, "
            "e.g. diffplan/walker2d-expert-v0"
        ) from None
    return chosen


def write_minari_dir(
    dataset: TrajectoryDataset,
    path: str | os.PathLike,
    *,
    dataset_id: str | None = None,
    overwrite: bool = False,
    description: str | None = None,
) -> Path:
    """Write ``dataset`` to ``path`` in Minari's layout, atomically; returns ``path``.

    The environment is recorded by its gymnasium spec when ``dataset.env_id`` is
    registered, so that ``MinariDataset.recover_environment()`` works.
    """
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    path = Path(path)
    dataset_id = minari_dataset_id(path, dataset_id)
    env_spec = gym.spec(dataset.env_id) if dataset.env_id else None
    box = lambda dim: gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)  # noqa: E731
    observation_space, action_space = box(dataset.obs_dim), box(dataset.act_dim)
    if env_spec is not None:
        env = gym.make(env_spec)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
        dataset.check_env(observation_space.shape, action_space.shape)
    info = dataset.info
    with atomic_directory(path, overwrite=overwrite) as tmp:
        storage = MinariStorage.new(
            tmp.resolve() / "data",  # minari's storage needs an absolute path
            observation_space=observation_space,
            action_space=action_space,
            env_spec=env_spec,
            data_format="hdf5",
        )
        metadata: dict[str, Any] = {
            "dataset_id": dataset_id,
            "algorithm_name": str(dataset.source.get("agent_algorithm", "unknown")),
            "code_permalink": "https://pypi.org/project/diffplan/",
            "author": {"diffplan"},
            "description": description or f"Collected with diffplan from {dataset.source}",
            "minari_version": _minari_version(),
            METADATA_KEY: info.to_dict()["source"],
        }
        if info.ref_min_score is not None:
            metadata["ref_min_score"] = info.ref_min_score
            metadata["ref_max_score"] = info.ref_max_score
        storage.update_metadata(metadata)
        storage.update_episodes(
            EpisodeBuffer(
                id=index,
                seed=episode.seed,
                observations=episode.observations,
                actions=episode.actions,
                rewards=episode.rewards,
                terminations=episode.terminations,
                truncations=episode.truncations,
                infos={},
            )
            for index, episode in enumerate(dataset)
        )
    return path


def _minari_version() -> str:
    from importlib.metadata import version

    return version("minari")
