"""Rebuild trained networks from checkpoints (no pickles: JSON + safetensors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffplan.checkpoints import store as ckpt
from diffplan.diffusion.backends import Backend
from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.guidance import ClassifierFreeGuidance, ReturnGuidanceConfig
from diffplan.diffusion.sampling import TrajectoryGenerator
from diffplan.envs import check_dims
from diffplan.models import ForwardDynamics, InverseDynamics, TemporalUnet, ValueNetwork

NETWORKS: dict[str, type[nn.Module]] = {
    network.__name__: network
    for network in (TemporalUnet, ValueNetwork, InverseDynamics, ForwardDynamics)
}

# checkpoint kind -> what it holds, in words
KINDS = {
    "diffusion": "a diffusion model",
    "value": "a value network",
    "inverse-dynamics": "an inverse dynamics model",
    "forward-dynamics": "a forward dynamics model",
}
# checkpoint kind -> the network it holds
KIND_NETWORKS = {
    "diffusion": TemporalUnet,
    "value": ValueNetwork,
    "inverse-dynamics": InverseDynamics,
    "forward-dynamics": ForwardDynamics,
}
MAX_PARAMETERS = 500_000_000  # 2 GB of float32: far beyond any diffplan model
SCHEDULER_KEYS = ("diffusion_steps", "schedule", "prediction", "clip_sample")


@dataclass(frozen=True)
class Loaded:
    """A network rebuilt from a checkpoint, with what the checkpoint records about it."""

    network: nn.Module
    meta: ckpt.CheckpointMeta
    path: Path  # the checkpoint directory (a run directory resolves to its latest)

    @property
    def step(self) -> int | None:
        """The training step of the checkpoint, from its directory name."""
        match = ckpt.STEP_DIR.match(self.path.name)
        return int(match.group(1)) if match else None


def build_network(architecture: dict[str, Any], source: Path | None = None) -> nn.Module:
    """The network a checkpoint's ``architecture`` describes: ``{"network": name, **kwargs}``.

    It is first built without memory (torch's meta device) so that absurd sizes are refused
    before anything is allocated; ``source``, the file it was read from, is named in messages."""
    kwargs = dict(architecture)
    name = kwargs.pop("network")
    if name not in NETWORKS:
        raise ValueError(
            f"{source or 'architecture'}: unknown network {name!r}; known: {sorted(NETWORKS)}"
        )
    try:
        with torch.device("meta"):
            size = sum(p.numel() for p in NETWORKS[name](**kwargs).parameters())
    except ValueError as error:  # the network's own message about its options
        raise ValueError(f"{source}: {error}" if source else str(error)) from None
    except (TypeError, RuntimeError, ZeroDivisionError) as error:
        raise ValueError(f"{source}: architecture {architecture} is invalid ({error})") from None
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"{source}: architecture {architecture} has {size:,} parameters "
            f"(over {MAX_PARAMETERS:,}); the file is corrupt or not a diffplan checkpoint"
        )
    return NETWORKS[name](**kwargs)


def check_architecture(meta: ckpt.CheckpointMeta, kind: str, source: Path) -> None:
    """Refuse a ``config.json`` whose architecture contradicts its kind, its training
    settings (window horizon) or its dataset (transition width)."""
    network = meta.architecture["network"]
    if network != KIND_NETWORKS[kind].__name__:
        raise ValueError(f"{source}: a {kind!r} checkpoint cannot hold a {network}")
    windows = meta.fingerprint.get("windows")
    horizon = meta.architecture.get("horizon")
    if isinstance(windows, dict) and horizon is not None and horizon != windows.get("horizon"):
        raise ValueError(
            f"{source}: architecture horizon {horizon} differs from the trained windows' "
            f"{windows.get('horizon')}; the file was edited: restore it"
        )
    width = meta.architecture.get("transition_dim")
    if width is not None and width != meta.dataset["obs_dim"] + meta.dataset["act_dim"]:
        raise ValueError(
            f"{source}: transition_dim {width} is not obs_dim + act_dim of its dataset "
            f"({meta.dataset['obs_dim']} + {meta.dataset['act_dim']}); restore the file"
        )


def load_network(
    path: str | Path, kind: str, *, device: str | torch.device = "cpu", weights: str = "ema"
) -> Loaded:
    """The network of a ``kind`` checkpoint or run directory (a key of :data:`KINDS`),
    on ``device`` in eval mode, with the checkpoint's metadata and directory."""
    checkpoint = ckpt.resolve(path)
    meta = ckpt.read_meta(checkpoint)
    if meta.kind != kind:
        raise ValueError(f"{checkpoint} holds {KINDS.get(meta.kind, meta.kind)}, not {KINDS[kind]}")
    check_architecture(meta, kind, checkpoint / "config.json")
    model = build_network(meta.architecture, checkpoint / "config.json")
    ckpt.load_weights(checkpoint, model, weights)
    return Loaded(model.to(device).eval(), meta, checkpoint)


def load_diffusion(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    weights: str = "ema",
    backend: Backend = "eager",
    returns: ReturnGuidanceConfig | None = None,
) -> tuple[TrajectoryGenerator, Loaded]:
    """A :class:`TrajectoryGenerator` from a diffusion checkpoint or run directory, and the
    loaded checkpoint (its raw denoiser, metadata and directory).

    ``weights``: ``"ema"`` (default, what the original samples with) or ``"model"``;
    ``backend``: how the denoiser runs (:mod:`diffplan.diffusion.backends`);
    ``returns``: the classifier-free guidance of a return-conditioned model (default:
    :class:`ReturnGuidanceConfig`'s); other models refuse settings other than the default.
    """
    loaded = load_network(path, "diffusion", device=device, weights=weights)
    model, meta = loaded.network, loaded.meta
    if meta.dataset["env_id"] is not None:
        check_dims(
            meta.dataset["env_id"], meta.dataset["obs_dim"], meta.dataset["act_dim"], loaded.path
        )
    conditioned = bool(meta.architecture.get("returns_condition"))
    if not conditioned and returns not in (None, ReturnGuidanceConfig()):
        raise ValueError(
            f"--planning.experimental.returns.* ({returns}) given, but {path} was trained "
            "without return conditioning; drop those options or train a model with "
            "--returns.enabled"
        )
    if conditioned:
        returns = returns or ReturnGuidanceConfig()
        model = ClassifierFreeGuidance(model, returns.target, returns.weight)
    config = meta.config
    missing = [key for key in SCHEDULER_KEYS if key not in config]
    if missing:
        raise ValueError(f"{loaded.path / 'config.json'}: config lacks {', '.join(missing)}")
    scheduler = DDPMScheduler(
        config["diffusion_steps"],
        schedule=config["schedule"],
        prediction_type=config["prediction"],
        clip_sample=config["clip_sample"],
    ).to(device)
    generator = TrajectoryGenerator(
        model, scheduler, meta.normalizer, obs_dim=meta.dataset["obs_dim"], backend=backend
    )
    return generator, loaded


def load_generator(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    weights: str = "ema",
    backend: Backend = "eager",
    returns: ReturnGuidanceConfig | None = None,
) -> TrajectoryGenerator:
    """The generator of :func:`load_diffusion` alone."""
    return load_diffusion(path, device=device, weights=weights, backend=backend, returns=returns)[0]


def load_value_network(
    path: str | Path, *, device: str | torch.device = "cpu", weights: str = "ema"
) -> nn.Module:
    """The value network ``(x (B, H, D) normalised, t (B,)) -> (B,)`` of a value checkpoint
    or run directory, in eval mode."""
    return load_network(path, "value", device=device, weights=weights).network
