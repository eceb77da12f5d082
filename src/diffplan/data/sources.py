"""One entry point for every dataset source: ``load_dataset(source)``.

``source`` is one of

* a directory written by ``diffplan collect`` (Minari layout, see :mod:`minari_format`);
* a D4RL-layout ``.hdf5``/``.h5`` file (see :mod:`d4rl_format`);
* a Minari dataset id such as ``mujoco/walker2d/expert-v0`` (local, else downloaded).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import tyro

from diffplan.data.d4rl_format import read_d4rl_hdf5
from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.minari_format import is_minari_dir, load_minari_id, read_minari_dir

HDF5_SUFFIXES = (".hdf5", ".h5")
MINARI_ID = re.compile(r"([\w-]+/)*[\w-]+-v\d+")  # minari's (namespace/)name-vN, simplified


def load_dataset(
    source: str, *, env_id: str | None = None, download: bool = True
) -> TrajectoryDataset:
    """Load a :class:`TrajectoryDataset` from a directory, a D4RL file or a Minari id.

    Args:
        source: the path or id (module docstring).
        env_id: for D4RL files, which carry no env id, the gymnasium id to record.
        download: allow Minari to download a dataset id that is not stored locally.
    """
    path = Path(source).expanduser()
    if path.suffix in HDF5_SUFFIXES:
        return read_d4rl_hdf5(path, env_id=env_id)
    if path.is_dir():
        if not is_minari_dir(path):
            raise FileNotFoundError(
                f"{path} is a directory but holds no dataset (no data/metadata.json); "
                "point at a directory written by `diffplan collect` or a Minari dataset"
            )
        return read_minari_dir(path)
    if path.exists():
        raise FileNotFoundError(
            f"{source} is a file but not a dataset. Expected a directory written by "
            f"`diffplan collect`, a D4RL file ending in {' or '.join(HDF5_SUFFIXES)}, or a "
            "Minari dataset id"
        )
    reason = path_reason(source)
    if reason:
        raise FileNotFoundError(
            f"{source} does not exist (taken for a path: {reason}; a Minari dataset id looks "
            "like namespace/name-v0)"
        )
    return load_minari_id(source, download=download)


def path_reason(source: str) -> str | None:
    """Why ``source``, which names nothing on disk, is taken for a path rather than a Minari
    id (``namespace/name-vN``), or None when it is read as an id."""
    if source.startswith((".", "/", "~")):
        return f"it starts with {source[0]!r}"
    if not MINARI_ID.fullmatch(source):
        return "it is not of the form namespace/name-vN"
    parent = Path(source).parent
    if parent != Path(".") and parent.exists():
        return f"{parent} exists here"
    return None


@dataclass
class InfoConfig:
    """Print a dataset's summary: episodes, steps, mean return, V-rate, provenance."""

    dataset: tyro.conf.Positional[str]
    """Dataset directory, D4RL .hdf5 file, or Minari dataset id."""
    env_id: str | None = None
    """Gymnasium id to record for D4RL files (they carry none), e.g. Walker2d-v5."""
    json: bool = False
    """Print the metadata as JSON instead of a table."""


def show_info(config: InfoConfig) -> None:
    dataset = load_dataset(config.dataset, env_id=config.env_id, download=False)
    if config.json:
        print(json.dumps(dataset.info.to_dict(), indent=2))
    else:
        print(dataset.summary())
