"""One entry point for every agent source: ``load_agent(path, env)``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import gymnasium as gym

from diffplan.agents.gaussian_mlp import load_gaussian_mlp
from diffplan.agents.zoo import Agent, AgentError, AgentLoader, load_sb3_agent, load_weights_agent

PACKAGED_WALKER2D_AGENT = Path(str(files("diffplan") / "assets" / "walker2d-ppo"))
"""The PPO Walker2d-v5 expert that ships with diffplan (see its MODEL_CARD.md)."""


def load_agent(path: str | Path, env: gym.Env, loader: AgentLoader = "weights") -> Agent:
    """Load an agent for ``env`` from ``path``.

    ``path`` is a diffplan agent directory (``agent.json`` + ``policy.safetensors``) or a
    stable-baselines3 model zip; for zips, ``loader`` picks the safe weights-only reader
    (default) or stable-baselines3's own, unpickling ``load`` (trusted files only).
    """
    path = Path(path)
    if path.is_dir():
        agent = load_gaussian_mlp(path)
        spec = agent.spec
        if env.observation_space.shape != (spec.obs_dim,) or env.action_space.shape != (
            spec.act_dim,
        ):
            raise AgentError(
                f"{path}: the agent was trained on {spec.env_id} (obs {spec.obs_dim}, act "
                f"{spec.act_dim}), which does not fit observation shape "
                f"{env.observation_space.shape} and action shape {env.action_space.shape}"
            )
        return agent
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such agent file or directory")
    if loader == "weights":
        return load_weights_agent(path, env)
    if loader == "sb3":
        return load_sb3_agent(path, env)
    raise ValueError(f"unknown agent loader {loader!r}; choose 'weights' or 'sb3'")
