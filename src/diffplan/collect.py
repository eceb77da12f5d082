"""``diffplan collect``: roll out an agent in a gymnasium environment and write a dataset.

Episodes run in ``num_envs`` environments side by side with one batched policy
call per step. Episode ``i`` is reset with seed ``seed + i`` and draws its
noise from its own generator seeded by ``(seed, i)``. The same ``seed`` and
``num_envs`` reproduce a dataset exactly; another ``num_envs`` gives the same
seeds and noise, but the policy's float rounding depends on the batch size and
the chaotic dynamics amplify it, so episodes drift apart after some steps.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

import diffplan
from diffplan.agents import AgentLoader, agent_sha256, load_agent
from diffplan.agents.experience import DEFAULT_NOISE, DEFAULT_SIGMA, NoiseKind, record_episodes
from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.minari_format import minari_dataset_id, write_minari_dir
from diffplan.envs import make_env
from diffplan.outputs import output_folder
from diffplan.tasks import DEFAULT_ENV, require_agent


@dataclass
class CollectConfig:
    """Roll out an agent (diffplan's own or an RL Zoo zip) and write a dataset (Minari layout)."""

    out: Path
    """Output dataset directory (written atomically; see --overwrite)."""
    agent: Path | None = None
    """SAC or TQC model zip (stable-baselines3 1.x or 2.x, as the RL Zoo publishes them), or a
    diffplan agent directory (agent.json + policy.safetensors, see `diffplan train-agent`).
    None: the task's packaged agent (Walker2d-v5's PPO expert; other tasks need --agent)."""
    env: str = DEFAULT_ENV
    """Gymnasium environment id (a task of diffplan/tasks.json, any version)."""
    steps: int | None = None
    """Collect exactly this many transitions (episodes cut at the end are marked truncated)."""
    episodes: int | None = None
    """Collect exactly this many complete episodes (instead of --steps)."""
    noise: NoiseKind = DEFAULT_NOISE
    """Exploration: 'none' = deterministic tanh(mean); 'policy' = the policy's own Gaussian
    (as the agent was trained); 'gaussian' = deterministic action + N(0, sigma^2), clipped."""
    sigma: float = DEFAULT_SIGMA
    """Standard deviation of --noise gaussian, in action units."""
    seed: int = 0
    """Episode i is reset with seed + i; noise generators are seeded from (seed, i)."""
    num_envs: int = 8
    """Environments stepped side by side (one batched policy call per step)."""
    loader: AgentLoader = "weights"
    """'weights': safe, reads only JSON and tensors; 'sb3': stable-baselines3 load, which
    unpickles the file and so runs any code in it (needs --trust-agent-file)."""
    trust_agent_file: bool = False
    """Allow --loader sb3 to unpickle --agent: only for a file from a source you trust."""
    force_env: bool = False
    """Use an agent trained on another task than --env (its agent.json or zip name says which)."""
    dataset_id: str | None = None
    """Minari dataset id recorded in the metadata, (namespace/)name-vN; default
    diffplan/<--out directory name>-v0."""
    overwrite: bool = False
    """Replace an existing --out (only once the new dataset is complete)."""
    progress: bool = field(default=True)
    """Show a progress bar."""


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else the platform's machine type."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def collect_dataset(config: CollectConfig) -> TrajectoryDataset:
    """Roll out ``config.agent`` and return the dataset with its provenance (not written)."""
    torch.set_num_threads(1)  # the policy is a tiny MLP: more threads only add contention
    agent_path = require_agent(config.agent, config.env)
    env = make_env(config.env)
    agent = load_agent(
        agent_path, env, config.loader, trust=config.trust_agent_file, force_env=config.force_env
    )
    env.close()
    began = time.perf_counter()
    episodes = record_episodes(
        agent,
        config.env,
        steps=config.steps,
        episodes=config.episodes,
        noise=config.noise,
        sigma=config.sigma,
        seed=config.seed,
        num_envs=config.num_envs,
        progress=config.progress,
    )
    seconds = time.perf_counter() - began
    source = {
        "format": "diffplan",
        "agent_file": str(agent_path),
        "agent_sha256": agent_sha256(agent_path),
        "agent_algorithm": agent.algorithm,
        "agent_loader": config.loader,
        "env_id": config.env,
        "noise": config.noise,
        "sigma": config.sigma if config.noise == "gaussian" else None,
        "seed": config.seed,
        "num_envs": config.num_envs,
        "requested_steps": config.steps,
        "requested_episodes": config.episodes,
        "collect_seconds": round(seconds, 2),
        "versions": {
            "diffplan": diffplan.__version__,
            "gymnasium": version("gymnasium"),
            "mujoco": version("mujoco"),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        # the simulator's float rounding follows the CPU: another CPU, another dataset
        "cpu": cpu_model(),
    }
    return TrajectoryDataset(episodes, env_id=config.env, source=source, name=str(config.out))


def collect(config: CollectConfig) -> TrajectoryDataset:
    """Run ``diffplan collect``: roll out, record provenance, write ``config.out``."""
    dataset_id = minari_dataset_id(config.out, config.dataset_id)  # checked before the work
    existing = "replace" if config.overwrite else "refuse"
    # the dataset is written atomically: a replaced one stays until the new one is complete
    with output_folder(config.out, "collect", existing=existing, marker=False):
        dataset = collect_dataset(config)
        write_minari_dir(dataset, config.out, dataset_id=dataset_id, overwrite=config.overwrite)
    steps, seconds = dataset.info.num_steps, dataset.source["collect_seconds"]
    print(dataset.summary())
    print(f"collect   {steps} steps in {seconds:.1f} s ({steps / max(seconds, 0.01):.0f} steps/s)")
    print(f"written   {config.out}")
    return dataset
