"""diffplan's own agent format: a Gaussian MLP policy as safetensors + JSON.

A directory ``DIR`` holds::

    DIR/policy.safetensors   # trunk.{i}.weight/bias, mean.weight/bias, log_std(.weight/bias)
    DIR/agent.json           # architecture, observation normalisation, action bounds, training
    DIR/MODEL_CARD.md        # how it was trained and how well it does

The policy acts on normalised observations ``clip((obs - mean) / sqrt(var + eps), ±clip)``.
Two kinds, as stable-baselines3 trains them: PPO's Gaussian (a state-independent
``log_std``; the deterministic action is the mean, clipped to the action bounds) and
SAC's squashed Gaussian (``squash``: a ``log_std`` head on the trunk; the action is
``tanh`` of the Gaussian rescaled to the bounds). Nothing in the format is pickled.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from diffplan.agents.zoo import (
    ACTIVATIONS,
    LOG_STD_MAX,
    LOG_STD_MIN,
    AgentError,
    squashed_gaussian_action,
)
from diffplan.atomic import atomic_path, write_json
from diffplan.envs import checked_env_id
from diffplan.inputs import read_json_object, read_safetensors

FORMAT = "diffplan-gaussian-mlp-v1"
RELU = "torch.nn.modules.activation ReLU"  # the ACTIVATIONS key train-agent's policies use
MAX_WIDTH = 65_536  # widest layer (and largest observation/action dim) an agent.json may ask for
MAX_PARAMETERS = 100_000_000  # 400 MB of float32, far beyond any policy MLP
NO_CLIP = 1e9  # the identity normalisation's clip: observations pass unchanged


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
    squash: bool = False
    """SAC's squashed Gaussian (module docstring); False: PPO's clipped one."""
    training: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    @classmethod
    def for_env(
        cls,
        venv,
        env_id: str,
        hidden: list[int],
        algorithm: str,
        training: dict,
        normalisation: tuple | None = None,
        squash: bool = False,
    ) -> GaussianMLPSpec:
        """The spec of a ReLU policy on ``venv``'s spaces (an SB3 vec env). ``normalisation``:
        ``(mean, var, clip, epsilon)`` of its observations; None: they pass unchanged."""
        obs_dim, space = int(venv.observation_space.shape[0]), venv.action_space
        mean, var, clip, epsilon = normalisation or ([0.0] * obs_dim, [1.0] * obs_dim, NO_CLIP, 0.0)
        return cls(
            env_id=env_id, obs_dim=obs_dim, act_dim=int(space.shape[0]), hidden=hidden,
            activation=RELU, obs_mean=list(mean), obs_var=list(var), obs_clip=float(clip),
            obs_epsilon=float(epsilon), action_low=space.low.tolist(),
            action_high=space.high.tolist(), algorithm=algorithm, squash=squash,
            training=training,
        )  # fmt: skip


class GaussianMLP(nn.Module):
    """``(N, obs_dim)`` normalised observations -> Gaussian mean and log std, each
    ``(N, act_dim)``; the log std is a parameter (PPO) or a head on the trunk (``squash``)."""

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
        zeros = torch.zeros(spec.act_dim)
        self.log_std = nn.Linear(width, spec.act_dim) if spec.squash else nn.Parameter(zeros)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.trunk(observations)
        mean = self.mean(latent)
        if isinstance(self.log_std, nn.Linear):
            return mean, self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mean, self.log_std.expand_as(mean)


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
        mean, log_std = self.policy(torch.as_tensor(normed, dtype=torch.float32))
        if self.spec.squash:
            return squashed_gaussian_action(mean, log_std, policy_noise, self._low, self._high)
        if policy_noise is not None:
            mean = mean + log_std.exp() * torch.as_tensor(policy_noise, dtype=mean.dtype)
        return np.clip(mean.numpy(), self._low, self._high)


def save_gaussian_mlp(directory: Path, spec: GaussianMLPSpec, policy: GaussianMLP) -> None:
    """Write ``policy.safetensors`` and ``agent.json`` into ``directory``, each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "policy.safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}, tmp)
    write_json(directory / "agent.json", asdict(spec))


def _size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WIDTH


def _numbers(value: object, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(x, int | float) and math.isfinite(x) for x in value)
    )


def read_spec(path: Path) -> GaussianMLPSpec:
    """The :class:`GaussianMLPSpec` in ``path`` (an ``agent.json``), every field checked."""
    fields = dataclasses.fields(GaussianMLPSpec)
    required = [f.name for f in fields if f.default is f.default_factory is dataclasses.MISSING]
    data = read_json_object(path, required=required, optional=[f.name for f in fields])
    problems = []
    if not (_size(data["obs_dim"]) and _size(data["act_dim"])):
        problems.append(f"obs_dim and act_dim must be integers in 1..{MAX_WIDTH}")
    elif (
        not (
            _numbers(data["obs_mean"], data["obs_dim"])
            and _numbers(data["obs_var"], data["obs_dim"])
        )
        or min(data["obs_var"], default=0) < 0
    ):
        problems.append("obs_mean and obs_var must be obs_dim finite numbers, obs_var >= 0")
    elif not (
        _numbers(data["action_low"], data["act_dim"])
        and _numbers(data["action_high"], data["act_dim"])
    ):
        problems.append("action_low and action_high must be act_dim finite numbers")
    elif not all(lo < hi for lo, hi in zip(data["action_low"], data["action_high"], strict=True)):
        problems.append("action_low must be below action_high in every dimension (swapped?)")
    if not (isinstance(data["hidden"], list) and all(_size(h) for h in data["hidden"])):
        problems.append(f"hidden must be a list of layer widths in 1..{MAX_WIDTH}")
    if data["activation"] not in ACTIVATIONS:
        problems.append(f"activation {data['activation']!r} is not one of {sorted(ACTIVATIONS)}")
    if not all(isinstance(data[k], int | float) for k in ("obs_clip", "obs_epsilon")):
        problems.append("obs_clip and obs_epsilon must be numbers")
    if not isinstance(data.get("squash", False), bool):
        problems.append("squash must be true or false")
    if data.get("format", FORMAT) != FORMAT:
        problems.append(f"format {data['format']!r}, this diffplan reads {FORMAT!r}")
    if not problems:
        widths = [data["obs_dim"], *data["hidden"], data["act_dim"]]
        size = sum(a * b for a, b in itertools.pairwise(widths))
        if size > MAX_PARAMETERS:
            problems.append(f"hidden {data['hidden']} gives {size:,} weights, too many")
    if problems:
        raise AgentError(f"{path}: not a usable diffplan agent: " + "; ".join(problems))
    checked_env_id(data["env_id"], path)
    return GaussianMLPSpec(**data)


def load_gaussian_mlp(directory: str | Path) -> GaussianMLPAgent:
    """Load a diffplan agent directory (see the module docstring)."""
    directory = Path(directory)
    spec_file, weights_file = directory / "agent.json", directory / "policy.safetensors"
    if not spec_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(f"{directory}: expected agent.json and policy.safetensors")
    spec = read_spec(spec_file)
    policy = GaussianMLP(spec)
    try:
        policy.load_state_dict(read_safetensors(weights_file))
    except RuntimeError as error:
        problem = " ".join(str(error).split())[:300]
        raise AgentError(f"{weights_file}: weights don't match agent.json ({problem})") from None
    return GaussianMLPAgent(spec, policy)
