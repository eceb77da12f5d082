"""Agents from stable-baselines3 / sb3-contrib model zips, as the RL Zoo publishes them.

Two loaders:

* ``"weights"`` (default, safe): reads only the zip's JSON ``data`` (never
  unpickled) and ``policy.pth`` with ``torch.load(weights_only=True)``, then
  rebuilds the squashed-Gaussian actor of SAC and TQC. It works for SB3 1.x
  (gym-0.19-era) and 2.x zips alike, needs no stable-baselines3, and cannot run
  code hidden in the file.
* ``"sb3"``: ``stable_baselines3``/``sb3_contrib`` ``load`` with the spaces and
  schedule overridden. It supports more policy types but unpickles the rest of
  the zip: use it only on files you trust.

Agents trained with observation normalisation (a ``vecnormalize.pkl`` beside
the zip) are not supported: that file is a pickle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import pickletools
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from diffplan.envs import checked_env_id
from diffplan.inputs import load_weights_only, read_json_object

AgentLoader = Literal["weights", "sb3"]

# module of the zip's policy class -> algorithm name
SUPPORTED_POLICIES = {
    "stable_baselines3.sac.policies": "SAC",
    "sb3_contrib.tqc.policies": "TQC",
}
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "torch.nn.modules.activation ReLU": nn.ReLU,
    "torch.nn.modules.activation Tanh": nn.Tanh,
    "torch.nn.modules.activation ELU": nn.ELU,
    "torch.nn.modules.activation LeakyReLU": nn.LeakyReLU,
    "torch.nn.modules.activation GELU": nn.GELU,
    "torch.nn.modules.activation SiLU": nn.SiLU,
}
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's clamp of the actor's log std


class AgentError(ValueError):
    """An agent file cannot be used; the message says why and what to do."""


class Agent(Protocol):
    """Anything that maps a batch of observations to a batch of actions."""

    algorithm: str

    def act(self, observations: np.ndarray, policy_noise: np.ndarray | None = None) -> np.ndarray:
        """``(N, obs_dim)`` -> ``(N, act_dim)`` actions in the env's action space.

        ``policy_noise`` ``(N, act_dim)``: standard normal draws for the policy's own
        Gaussian (before ``tanh``); ``None`` gives the deterministic action ``tanh(mean)``.
        """
        ...


def squashed_gaussian_action(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    policy_noise: np.ndarray | None,
    low: np.ndarray,
    high: np.ndarray,
) -> np.ndarray:
    """``tanh(mean + exp(log_std) * noise)`` rescaled from [-1, 1] to ``[low, high]``, as SB3."""
    pre_tanh = (
        mean
        if policy_noise is None
        else mean + log_std.exp() * torch.as_tensor(policy_noise, dtype=mean.dtype)
    )
    unit = torch.tanh(pre_tanh).numpy().astype(np.float64)
    return (low + 0.5 * (unit + 1.0) * (high - low)).astype(np.float32)


def agent_sha256(path: str | Path) -> str:
    """SHA-256 of an agent file, or of a diffplan agent directory's two files."""
    path = Path(path)
    files = [path / "agent.json", path / "policy.safetensors"] if path.is_dir() else [path]
    digest = hashlib.sha256()
    for name in files:
        with open(name, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _pickled_global(serialized: object, path: Path) -> str | None:
    """``"module name"`` of a pickled class reference, read without unpickling."""
    try:
        ops = pickletools.genops(base64.b64decode(str(serialized), validate=True))
        strings = [arg for opcode, arg, _ in ops if isinstance(arg, str)]
    except (binascii.Error, ValueError) as error:
        raise AgentError(f"{path}: data holds a corrupt class reference ({error})") from None
    return " ".join(strings[:2]) if len(strings) >= 2 else None


def _object(metadata: dict, key: str, path: Path) -> dict:
    """``metadata[key]``, which SB3 writes as a JSON object (absent: empty)."""
    value = metadata.get(key) or {}
    if not isinstance(value, dict):
        raise AgentError(f"{path}: data's {key!r} is a {type(value).__name__}, not an object")
    return value


def read_zip_metadata(path: Path) -> dict:
    """The zip's ``data`` JSON (SB3's own format: pickled parts stay base64 strings)."""
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("data").decode()
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, OSError) as error:
        raise AgentError(
            f"{path}: not a stable-baselines3 model zip ({type(error).__name__}: {error})"
        ) from None
    return read_json_object(path / "data", text=text)


def zip_env_id(path: Path) -> str | None:
    """The env id an RL Zoo zip is named after (``Walker2d-v3.zip``), if its name is one."""
    if re.fullmatch(r"[A-Za-z][\w.-]*-v\d+", path.stem) and path.stem in gym.registry:
        return checked_env_id(path.stem, path)
    return None


def algorithm_of(metadata: dict, path: Path) -> str:
    module = _object(metadata, "policy_class", path).get("__module__")
    if module not in SUPPORTED_POLICIES:
        raise AgentError(
            f"{path}: policy {module!r} is not supported; supported: "
            f"{', '.join(sorted(SUPPORTED_POLICIES.values()))} (from {sorted(SUPPORTED_POLICIES)})"
        )
    return SUPPORTED_POLICIES[module]


class SquashedGaussianActor(nn.Module):
    """SAC/TQC actor: MLP trunk, then mean and log-std heads; actions are ``tanh`` of a Gaussian.

    Parameter names match SB3's ``actor.*`` so its ``policy.pth`` loads directly.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: list[int], activation: type[nn.Module]
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            width = size
        self.latent_pi = nn.Sequential(*layers)
        self.mu = nn.Linear(width, act_dim)
        self.log_std = nn.Linear(width, act_dim)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, obs_dim)`` -> mean and log std, both ``(N, act_dim)`` (before tanh)."""
        latent = self.latent_pi(observations)
        return self.mu(latent), self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX)


@dataclass
class WeightsAgent:
    """A SAC/TQC actor rebuilt from weights only. Actions are rescaled from [-1, 1]
    to the action space's bounds, as SB3 does."""

    actor: SquashedGaussianActor
    action_low: np.ndarray
    action_high: np.ndarray
    algorithm: str

    @torch.inference_mode()
    def act(self, observations: np.ndarray, policy_noise: np.ndarray | None = None) -> np.ndarray:
        mean, log_std = self.actor(torch.as_tensor(observations, dtype=torch.float32))
        return squashed_gaussian_action(
            mean, log_std, policy_noise, self.action_low, self.action_high
        )


def load_weights_agent(path: Path, env: gym.Env) -> WeightsAgent:
    metadata = read_zip_metadata(path)
    algorithm = algorithm_of(metadata, path)
    kwargs = _object(metadata, "policy_kwargs", path)
    if metadata.get("use_sde") or kwargs.get("use_sde"):
        raise AgentError(f"{path}: gSDE policies need --loader sb3 (trusted files only)")
    activation: type[nn.Module] = nn.ReLU
    if "activation_fn" in kwargs:
        name = _pickled_global(_object(kwargs, "activation_fn", path).get(":serialized:"), path)
        if name not in ACTIVATIONS:
            raise AgentError(f"{path}: activation {name!r} unknown to the weights loader")
        activation = ACTIVATIONS[name]
    try:
        with zipfile.ZipFile(path) as archive, archive.open("policy.pth") as file:
            state = load_weights_only(file, path / "policy.pth")
    except (KeyError, zipfile.BadZipFile) as error:
        raise AgentError(f"{path}: cannot read policy.pth weights ({error})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise AgentError(f"{path}: policy.pth is not a dict of named tensors (a state dict)")
    actor_state = {k.removeprefix("actor."): v for k, v in state.items() if k.startswith("actor.")}
    trunk = sorted(
        (int(k.split(".")[1]), v.shape[0])
        for k, v in actor_state.items()
        if k.startswith("latent_pi.") and k.endswith(".weight")
    )
    if "mu.weight" not in actor_state or "latent_pi.0.weight" not in actor_state:
        raise AgentError(
            f"{path}: policy.pth holds no SAC/TQC actor (needs actor.latent_pi.0.weight and "
            f"actor.mu.weight; keys: {sorted(state)[:6]}...)"
        )
    flat = sorted(k for k, v in actor_state.items() if k.endswith(".weight") and v.ndim != 2)
    if flat:
        raise AgentError(f"{path}: policy.pth's {', '.join(flat)} must be matrices")
    obs_dim = actor_state["latent_pi.0.weight"].shape[1]
    act_dim = actor_state["mu.weight"].shape[0]
    if env.observation_space.shape != (obs_dim,) or env.action_space.shape != (act_dim,):
        raise AgentError(
            f"{path}: the agent takes observations of dim {obs_dim} and gives actions of dim "
            f"{act_dim}, but {env.spec.id if env.spec else 'the env'} has observation shape "
            f"{env.observation_space.shape} and action shape {env.action_space.shape}"
        )
    actor = SquashedGaussianActor(obs_dim, act_dim, [size for _, size in trunk], activation)
    try:
        actor.load_state_dict(actor_state)
    except RuntimeError as error:
        problem = " ".join(str(error).split())[:300]
        raise AgentError(f"{path}: policy.pth's actor is inconsistent ({problem})") from None
    actor.eval()
    space = env.action_space
    return WeightsAgent(
        actor, space.low.astype(np.float64), space.high.astype(np.float64), algorithm
    )


@dataclass
class SB3Agent:
    """A SAC/TQC model loaded by stable-baselines3 itself (trusted files only); its actor's
    Gaussian is read out so that noise is injected exactly as for :class:`WeightsAgent`."""

    model: Any
    algorithm: str
    action_low: np.ndarray
    action_high: np.ndarray

    @torch.inference_mode()
    def act(self, observations: np.ndarray, policy_noise: np.ndarray | None = None) -> np.ndarray:
        obs = torch.as_tensor(observations, dtype=torch.float32)
        mean, log_std, _ = self.model.policy.actor.get_action_dist_params(obs)
        return squashed_gaussian_action(
            mean, log_std, policy_noise, self.action_low, self.action_high
        )


def load_sb3_agent(path: Path, env: gym.Env) -> SB3Agent:
    algorithm = algorithm_of(read_zip_metadata(path), path)
    try:
        if algorithm == "TQC":
            from sb3_contrib import TQC as model_class
        else:
            from stable_baselines3 import SAC as model_class
    except ImportError:
        raise AgentError(
            "--loader sb3 needs stable-baselines3 and sb3-contrib: pip install 'diffplan[sb3]'"
        ) from None
    custom_objects = {
        "observation_space": env.observation_space,
        "action_space": env.action_space,
        "lr_schedule": lambda _: 0.0,
    }
    model = model_class.load(path, custom_objects=custom_objects, device="cpu")
    space = env.action_space
    return SB3Agent(model, algorithm, space.low.astype(np.float64), space.high.astype(np.float64))
