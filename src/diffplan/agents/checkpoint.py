"""What every ``train-agent`` checkpoint holds, whatever the algorithm.

A checkpoint directory holds ``policy.safetensors`` (weights), ``optimizer.pt`` (optimizer
states, read back with ``weights_only=True``), whatever else the algorithm needs, and
``state.json``, written last: a directory with a ``state.json`` is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffplan.atomic import atomic_path, write_json


def save_weights(directory: Path, weights: dict[str, torch.Tensor], optimizers: dict) -> None:
    """Write ``policy.safetensors`` and ``optimizer.pt`` into ``directory``, each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "policy.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in weights.items()}, tmp)
    with atomic_path(directory / "optimizer.pt") as tmp:
        torch.save(optimizers, tmp)


def write_state(directory: Path, algorithm: str, model, **extra) -> None:
    """Write ``state.json`` (the algorithm, the model's step count and ``extra``): last."""
    state = {"algorithm": algorithm, "num_timesteps": int(model.num_timesteps), **extra}
    write_json(directory / "state.json", state)


def load_weights(directory: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """``(weights, optimizers, state)`` of the checkpoint in ``directory``."""
    if not (directory / "state.json").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {directory}")
    weights = load_file(directory / "policy.safetensors")
    optimizers = torch.load(directory / "optimizer.pt", weights_only=True)
    return weights, optimizers, json.loads((directory / "state.json").read_text())
