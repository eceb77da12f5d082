"""One entry point for every agent source: ``load_agent(path, env)``."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

import gymnasium as gym

from diffplan.agents.gaussian_mlp import load_gaussian_mlp
from diffplan.agents.zoo import (
    Agent,
    AgentError,
    AgentLoader,
    load_sb3_agent,
    load_weights_agent,
    zip_env_id,
)
from diffplan.envs import same_task

PACKAGED_WALKER2D_AGENT = Path(str(files("diffplan") / "assets" / "walker2d-ppo"))
"""The PPO Walker2d-v5 expert that ships with diffplan (see its MODEL_CARD.md)."""


def load_agent(
    path: str | Path,
    env: gym.Env,
    loader: AgentLoader = "weights",
    *,
    trust: bool = False,
    force_env: bool = False,
) -> Agent:
    """Load an agent for ``env`` from ``path``.

    ``path`` is a diffplan agent directory (``agent.json`` + ``policy.safetensors``) or a
    stable-baselines3 model zip; for zips, ``loader`` picks the safe weights-only reader
    (default) or stable-baselines3's own, unpickling ``load``, which runs code from the file
    and needs ``trust``. An agent trained on another task than ``env``'s (as its
    ``agent.json`` or the RL Zoo zip's name says) is refused unless ``force_env``.
    """
    path = Path(path)
    env_id = env.spec.id if env.spec else None
    if path.is_dir():
        agent = load_gaussian_mlp(path)
        spec = agent.spec
        if env_id is not None:
            same_task(spec.env_id, env_id, path / "agent.json", force=force_env)
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
    agent_env = zip_env_id(path)
    if agent_env is not None and env_id is not None:
        same_task(agent_env, env_id, path, force=force_env)
    if loader == "weights":
        return load_weights_agent(path, env)
    if loader == "sb3":
        if not trust:
            raise ValueError(
                f"{path}: --loader sb3 unpickles the zip, which runs any code it holds; pass "
                "--trust-agent-file only for a file from a source you trust, or use "
                "--loader weights (safe)"
            )
        print(
            f"diffplan: warning: loading {path} with stable-baselines3 runs code in the file "
            "(--trust-agent-file)",
            file=sys.stderr,
        )
        return load_sb3_agent(path, env)
    raise ValueError(f"unknown agent loader {loader!r}; choose 'weights' or 'sb3'")
