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


def build_network(architecture: dict[str, Any]) -> nn.Module:
    """The network a checkpoint's ``architecture`` describes: ``{"network": name, **kwargs}``."""
    kwargs = dict(architecture)
    name = kwargs.pop("network")
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known: {sorted(NETWORKS)}")
    return NETWORKS[name](**kwargs)


def load_network(
    path: str | Path, kind: str, *, device: str | torch.device = "cpu", weights: str = "ema"
) -> Loaded:
    """The network of a ``kind`` checkpoint or run directory (a key of :data:`KINDS`),
    on ``device`` in eval mode, with the checkpoint's metadata and directory."""
    checkpoint = ckpt.resolve(path)
    meta = ckpt.read_meta(checkpoint)
    if meta.kind != kind:
        raise ValueError(f"{checkpoint} holds {KINDS.get(meta.kind, meta.kind)}, not {KINDS[kind]}")
    model = build_network(meta.architecture)
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
    conditioned = bool(meta.architecture.get("returns_condition"))
    if not conditioned and returns not in (None, ReturnGuidanceConfig()):
        raise ValueError(
            f"--planning.returns.* ({returns}) given, but {path} was trained without return "
            "conditioning; drop those options or train a model with --returns.enabled"
        )
    if conditioned:
        returns = returns or ReturnGuidanceConfig()
        model = ClassifierFreeGuidance(model, returns.target, returns.weight)
    config = meta.config
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
