"""Checkpoints: one directory per saved step, written atomically.

Layout of ``<run>/checkpoints/step_<N>/``:

* ``model.safetensors``, ``ema.safetensors``: live and EMA weights;
* ``config.json``: ``{"kind", "step", "architecture", "fingerprint", "config"}``;
  ``architecture`` rebuilds the network, ``fingerprint`` lists every setting a
  resumed run must share;
* ``normalizer.json``: the window normaliser (``Normalizer.state_dict()``);
* ``dataset.json``: the dataset's ``DatasetInfo.to_dict()``;
* ``targets.json`` (value networks only): the value-target normaliser;
* ``trainer_state.pt``: step, optimiser state, torch RNG state and elapsed time, read with
  ``torch.load(weights_only=True)``; nothing else is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from diffplan.atomic import atomic_directory
from diffplan.data.episodes import DatasetInfo
from diffplan.data.normalizers import Normalizer
from diffplan.envs import checked_env_id
from diffplan.inputs import load_weights_only, read_json_object, read_safetensors

STEP_DIR = re.compile(r"^step_(\d+)$")
HEADER_KEYS = ("kind", "step", "architecture", "fingerprint", "config")


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples -> lists, paths -> strings)."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint records besides weights (all JSON)."""

    kind: str
    architecture: dict[str, Any]
    fingerprint: dict[str, Any]
    config: dict[str, Any]
    normalizer: Normalizer
    dataset: dict[str, Any]
    targets: Normalizer | None = None


def save_checkpoint(
    directory: Path,
    *,
    step: int,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: CheckpointMeta,
    extra: dict[str, float] | None = None,
) -> None:
    """Write one checkpoint directory atomically (replacing an existing one); ``extra``
    numbers go into ``trainer_state.pt``."""
    with atomic_directory(directory, overwrite=True) as tmp:
        for name, module in (("model", model), ("ema", ema)):
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(tmp / f"{name}.safetensors"))
        header = {
            "kind": meta.kind,
            "step": step,
            "architecture": meta.architecture,
            "fingerprint": meta.fingerprint,
            "config": meta.config,
        }
        (tmp / "config.json").write_text(json.dumps(jsonable(header), indent=2) + "\n")
        (tmp / "normalizer.json").write_text(json.dumps(meta.normalizer.state_dict()) + "\n")
        (tmp / "dataset.json").write_text(json.dumps(jsonable(meta.dataset), indent=2) + "\n")
        if meta.targets is not None:
            (tmp / "targets.json").write_text(json.dumps(meta.targets.state_dict()) + "\n")
        trainer_state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            **(extra or {}),
        }
        torch.save(trainer_state, tmp / "trainer_state.pt")


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories of ``run_dir``, oldest first."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step_*") if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))  # type: ignore[union-attr]


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (meaning its latest checkpoint)."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    found = checkpoints(path)
    if not found:
        raise FileNotFoundError(f"{path} is neither a checkpoint nor a run directory with one")
    return found[-1]


def read_header(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``: kind, step, architecture, fingerprint, config."""
    path = checkpoint / "config.json"
    header = read_json_object(path, required=HEADER_KEYS)
    for key in ("architecture", "fingerprint", "config"):
        if not isinstance(header[key], dict):
            raise ValueError(f"{path}: {key!r} must be an object; restore the checkpoint")
    if not isinstance(header["kind"], str) or not isinstance(
        header["architecture"].get("network"), str
    ):
        raise ValueError(f"{path}: 'kind' and 'architecture.network' must be strings")
    return header


def read_normalizer(path: Path, dim: int) -> Normalizer:
    """The normaliser in ``path``, which must have ``dim`` entries."""
    try:
        normalizer = Normalizer.from_state_dict(read_json_object(path))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a normaliser ({error}); restore the checkpoint") from None
    if normalizer.dim != dim:
        raise ValueError(f"{path}: {normalizer.dim} entries where the model needs {dim}")
    return normalizer


def read_dataset_info(path: Path) -> dict[str, Any]:
    """A checkpoint's ``dataset.json``, its env id a registered one (see :mod:`diffplan.envs`)."""
    names = [field.name for field in dataclasses.fields(DatasetInfo)]
    dataset = read_json_object(path, required=names[:-1], optional=names[-1:])
    for key in ("obs_dim", "act_dim"):
        if not isinstance(dataset[key], int) or isinstance(dataset[key], bool) or dataset[key] < 1:
            raise ValueError(f"{path}: {key} must be a positive integer, got {dataset[key]!r}")
    if dataset["env_id"] is not None:
        checked_env_id(dataset["env_id"], path)
    return dataset


def read_meta(checkpoint: Path) -> CheckpointMeta:
    """Everything but the weights and the trainer state, checked for consistency."""
    header = read_header(checkpoint)
    dataset = read_dataset_info(checkpoint / "dataset.json")
    width = dataset["obs_dim"] + dataset["act_dim"]
    targets = checkpoint / "targets.json"
    return CheckpointMeta(
        kind=header["kind"],
        architecture=header["architecture"],
        fingerprint=header["fingerprint"],
        config=header["config"],
        normalizer=read_normalizer(checkpoint / "normalizer.json", width),
        dataset=dataset,
        targets=read_normalizer(targets, 1) if targets.is_file() else None,
    )


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"model.dim": 32, ...}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved (checkpoint) vs current (now)"`` for every (nested) setting that differs."""
    saved, current = flatten(jsonable(saved)), flatten(jsonable(current))
    return [
        f"{key}: {saved.get(key, '<absent>')} (checkpoint) vs {current.get(key, '<absent>')} (now)"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]


def check_compatible(checkpoint: Path, kind: str, fingerprint: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every setting in which ``checkpoint`` differs."""
    header = read_header(checkpoint)
    problems = differences(
        {"kind": header["kind"], **header["fingerprint"]}, {"kind": kind, **fingerprint}
    )
    if problems:
        raise ValueError(
            f"checkpoint {checkpoint} belongs to another model/config: " + "; ".join(problems)
        )


def load_weights(checkpoint: Path, module: nn.Module, which: str = "ema") -> None:
    """Load ``which`` (``"model"`` or ``"ema"``) weights into ``module``; shape errors are
    reported as ``ValueError`` listing the mismatching tensors."""
    state = read_safetensors(checkpoint / f"{which}.safetensors")
    own = module.state_dict()
    problems = [f"{k} missing" for k in own if k not in state]
    problems += [f"{k} unexpected" for k in state if k not in own]
    problems += [
        f"{k} {tuple(state[k].shape)} (checkpoint) vs {tuple(v.shape)} (model)"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        shown = "; ".join(problems[:5]) + more
        raise ValueError(f"checkpoint {checkpoint} does not fit this network: {shown}")
    module.load_state_dict(state)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """Step, optimiser state and RNG state (tensors and plain containers only)."""
    state = load_weights_only(checkpoint / "trainer_state.pt", checkpoint / "trainer_state.pt")
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(
            f"{checkpoint / 'trainer_state.pt'}: not a trainer state; resume elsewhere"
        )
    return state
