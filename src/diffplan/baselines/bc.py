"""Behaviour cloning: an MLP from normalised observations to actions, the planners' first baseline.

The policy maps an observation ``(B, obs_dim)`` through the data's Gaussian
normaliser, ``layers`` ReLU layers of width ``hidden`` and ``tanh``, scaled to the
action bounds ``[low, high]``: ``a = center + radius * tanh(f(s))``. It is trained with
Adam on the mean squared error to the data's actions (clipped to the bounds).

Why ``tanh`` rather than plain regression clipped at acting time: every output is
a valid action, training and acting compute the same function (a clip applied only
when acting would act differently from what the loss saw), and it is the
deterministic policy head of d3rlpy's BC and TD3+BC, so this BC and TD3+BC differ
only in their objectives.

A trained policy is a folder: ``policy.safetensors`` (weights) and ``policy.json``
(architecture, normaliser, bounds, training record); nothing is pickled.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffplan.atomic import atomic_path, write_json
from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.normalizers import Normalizer
from diffplan.training.trainer import make_optimizer, step_generator

WEIGHTS, META = "policy.safetensors", "policy.json"


@dataclass
class BCConfig:
    """Behaviour cloning's network and optimiser."""

    batch_size: int = 256
    """Transitions per step."""
    lr: float = 1e-3
    """Adam learning rate (d3rlpy's BC default)."""
    hidden: int = 256
    """Width of each hidden layer."""
    layers: int = 2
    """Hidden layers."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "hidden", "layers"):
            if getattr(self, name) < 1:
                option = f"--bc.{name.replace('_', '-')}"
                raise ValueError(f"{option} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--bc.lr must be > 0, got {self.lr}")


class BCPolicy(nn.Module):
    """``observations (B, obs_dim)`` in the environment's units -> ``actions (B, act_dim)``.

    Also a :class:`~diffplan.evaluation.closed_loop.Controller` (:meth:`reset`, :meth:`act`).
    """

    def __init__(
        self, normalizer: Normalizer, low: np.ndarray, high: np.ndarray, *, hidden: int, layers: int
    ) -> None:
        super().__init__()
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        if low.shape != high.shape or low.ndim != 1 or not np.all(high > low):
            raise ValueError(f"action bounds need low < high of one shape, got {low} and {high}")
        self.normalizer = normalizer
        self.low, self.high = low, high
        self.architecture = {"hidden": hidden, "layers": layers}
        blocks: list[nn.Module] = []
        width = normalizer.dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, low.shape[0]))
        self.register_buffer("center", torch.as_tensor((high + low) / 2))
        self.register_buffer("radius", torch.as_tensor((high - low) / 2))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.center + self.radius * torch.tanh(
            self.net(self.normalizer.normalize(observations))
        )

    def reset(self, num_envs: int) -> None:
        """Nothing to reset: the policy is memoryless."""

    @torch.no_grad()
    def act(self, observations: np.ndarray, env_ids: np.ndarray | None = None) -> np.ndarray:
        """``(N, obs_dim)`` numpy observations -> ``(N, act_dim)`` float32 actions."""
        self.eval()
        return self(torch.as_tensor(observations, dtype=torch.float32)).numpy()


def transitions(dataset: TrajectoryDataset) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's ``(N, obs_dim)`` observations and the ``(N, act_dim)`` actions taken there."""
    observations = np.concatenate([e.observations[:-1] for e in dataset])
    actions = np.concatenate([e.actions for e in dataset])
    return observations.astype(np.float32), actions.astype(np.float32)


def train_bc(
    dataset: TrajectoryDataset,
    low: np.ndarray,
    high: np.ndarray,
    config: BCConfig,
    *,
    steps: int,
    seed: int,
) -> tuple[BCPolicy, dict[str, Any]]:
    """Fit a :class:`BCPolicy` to ``dataset`` in ``steps`` Adam steps; returns it and a record.

    ``seed`` fixes the initial weights and every batch (batch ``i`` from
    :func:`~diffplan.training.trainer.step_generator`).
    """
    observations, actions = transitions(dataset)
    actions = np.clip(actions, low, high)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = BCPolicy(
            Normalizer.fit(observations), low, high, hidden=config.hidden, layers=config.layers
        )
    optimizer = make_optimizer(policy, config.lr)
    obs, act = torch.from_numpy(observations), torch.from_numpy(actions)
    began = time.perf_counter()
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    policy.train()
    for step in range(steps):
        index = torch.randint(len(obs), (config.batch_size,), generator=step_generator(seed, step))
        loss = torch.mean((policy(obs[index]) - act[index]) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    record = {
        "seed": seed,
        "steps": steps,
        "bc": asdict(config),
        "final_batch_loss": loss.item(),
        "seconds": time.perf_counter() - began,
        "transitions": len(obs),
    }
    return policy, record


def save_policy(policy: BCPolicy, folder: Path, record: dict[str, Any]) -> None:
    """Write ``policy.safetensors``, then ``policy.json`` (marks a finished save), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in policy.net.state_dict().items()}, str(tmp))
    write_json(
        folder / META,
        {
            "kind": "bc",
            "architecture": policy.architecture,
            "normalizer": policy.normalizer.state_dict(),
            "low": policy.low.tolist(),
            "high": policy.high.tolist(),
            "training": record,
        },
    )


def load_policy(folder: Path) -> tuple[BCPolicy, dict[str, Any]]:
    """The policy saved by :func:`save_policy` in ``folder`` and its ``policy.json``."""
    meta_path, weights_path = folder / META, folder / WEIGHTS
    for path in (meta_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: train the policy with `diffplan baseline`")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != "bc":
        raise ValueError(
            f"{meta_path} is not a behaviour-cloning policy (kind {meta.get('kind')!r})"
        )
    policy = BCPolicy(
        Normalizer.from_state_dict(meta["normalizer"]),
        np.array(meta["low"]),
        np.array(meta["high"]),
        **meta["architecture"],
    )
    policy.net.load_state_dict(load_file(str(weights_path)))
    return policy, meta
