"""diffplan's own agent format: a Gaussian MLP policy as safetensors + JSON.

A directory ``DIR`` holds::

    DIR/policy.safetensors   # trunk.{i}.weight/bias, mean.weight/bias, log_std
    DIR/agent.json           # architecture, observation normalisation, action bounds, training
    DIR/MODEL_CARD.md        # how it was trained and how well it does

The policy acts on normalised observations ``clip((obs - mean) / sqrt(var + eps), ±clip)``;
its deterministic action is the Gaussian's mean, clipped to the action bounds
(as stable-baselines3's PPO does). Nothing in the format is pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffplan.agents.zoo import ACTIVATIONS, AgentError
from diffplan.atomic import atomic_path, write_json

FORMAT = "diffplan-gaussian-mlp-v1"


@dataclass
class GaussianMLPSpec:
    """Everything but the weights; stored as ``agent.json``."""

    env_id: str
    obs_dim: int
    act_dim: int
    hidden: list[int]
    activation: str
    """Key of :data:`diffplan.agents.zoo.ACTIVATIONS` (``"torch.nn.modules.activation ReLU"``)."""
    obs_mean: list[float]
    obs_var: list[float]
    obs_clip: float
    obs_epsilon: float
    action_low: list[float]
    action_high: list[float]
    algorithm: str = "PPO"
    training: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT


class GaussianMLP(nn.Module):
    """``(N, obs_dim)`` normalised observations -> Gaussian mean ``(N, act_dim)``; std is
    ``exp(log_std)``, state-independent."""

    def __init__(self, spec: GaussianMLPSpec) -> None:
        super().__init__()
        activation = ACTIVATIONS[spec.activation]
        layers: list[nn.Module] = []
        width = spec.obs_dim
        for size in spec.hidden:
            layers += [nn.Linear(width, size), activation()]
            width = size
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Linear(width, spec.act_dim)
        self.log_std = nn.Parameter(torch.zeros(spec.act_dim))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.mean(self.trunk(observations))


class GaussianMLPAgent:
    """An :class:`~diffplan.agents.zoo.Agent` for a :class:`GaussianMLP` directory."""

    def __init__(self, spec: GaussianMLPSpec, policy: GaussianMLP) -> None:
        self.spec, self.policy = spec, policy.eval()
        self.algorithm = spec.algorithm
        self._mean = np.asarray(spec.obs_mean, np.float64)
        self._std = np.sqrt(np.asarray(spec.obs_var, np.float64) + spec.obs_epsilon)
        self._low = np.asarray(spec.action_low, np.float32)
        self._high = np.asarray(spec.action_high, np.float32)

    @torch.inference_mode()
    def act(self, observations: np.ndarray, policy_noise: np.ndarray | None = None) -> np.ndarray:
        normed = np.clip(
            (observations - self._mean) / self._std, -self.spec.obs_clip, self.spec.obs_clip
        )
        mean = self.policy(torch.as_tensor(normed, dtype=torch.float32))
        if policy_noise is not None:
            mean = mean + self.policy.log_std.exp() * torch.as_tensor(
                policy_noise, dtype=mean.dtype
            )
        return np.clip(mean.numpy(), self._low, self._high)


def save_gaussian_mlp(directory: Path, spec: GaussianMLPSpec, policy: GaussianMLP) -> None:
    """Write ``policy.safetensors`` and ``agent.json`` into ``directory``, each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "policy.safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}, tmp)
    write_json(directory / "agent.json", asdict(spec))


def load_gaussian_mlp(directory: str | Path) -> GaussianMLPAgent:
    """Load a diffplan agent directory (see the module docstring)."""
    directory = Path(directory)
    spec_file, weights_file = directory / "agent.json", directory / "policy.safetensors"
    if not spec_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(f"{directory}: expected agent.json and policy.safetensors")
    try:
        spec = GaussianMLPSpec(**json.loads(spec_file.read_text()))
    except (TypeError, json.JSONDecodeError) as error:
        raise AgentError(f"{spec_file}: not a diffplan agent description ({error})") from None
    if spec.format != FORMAT:
        raise AgentError(f"{spec_file}: format {spec.format!r}, this diffplan reads {FORMAT!r}")
    policy = GaussianMLP(spec)
    try:
        policy.load_state_dict(load_file(weights_file))
    except (RuntimeError, OSError) as error:
        raise AgentError(f"{weights_file}: weights don't match agent.json ({error})") from None
    return GaussianMLPAgent(spec, policy)
