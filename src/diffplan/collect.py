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
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import diffplan
from diffplan.agents import (
    Agent,
    AgentLoader,
    agent_sha256,
    load_agent,
)
from diffplan.data.episodes import Episode, TrajectoryDataset, make_episode
from diffplan.data.minari_format import write_minari_dir
from diffplan.outputs import output_folder
from diffplan.tasks import DEFAULT_ENV, require_agent

NoiseKind = Literal["none", "gaussian", "policy"]
DEFAULT_NOISE: NoiseKind = "gaussian"
DEFAULT_SIGMA = 0.03  # TQC on Walker2d-v5: 0.03 keeps its return (falls are rare); 0.1 falls 23 %


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
    unpickles the file (trusted files only)."""
    overwrite: bool = False
    """Replace an existing --out (only once the new dataset is complete)."""
    progress: bool = field(default=True)
    """Show a progress bar."""


@dataclass
class _Slot:
    """An environment and the episode it is currently running."""

    env: gym.Env
    episode: int = -1
    seed: int = 0
    rng: np.random.Generator | None = None
    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)

    def finish(self, terminated: bool, truncated: bool) -> Episode:
        steps = len(self.actions)
        terminations, truncations = np.zeros(steps, bool), np.zeros(steps, bool)
        terminations[-1], truncations[-1] = terminated, truncated
        episode = make_episode(
            np.stack(self.observations),
            np.stack(self.actions),
            np.array(self.rewards),
            terminations,
            truncations,
            id=self.episode,
            seed=self.seed,
        )
        self.episode, self.observations, self.actions, self.rewards = -1, [], [], []
        return episode


def rollout(
    agent: Agent,
    env_id: str,
    *,
    steps: int | None = None,
    episodes: int | None = None,
    noise: NoiseKind = DEFAULT_NOISE,
    sigma: float = DEFAULT_SIGMA,
    seed: int = 0,
    num_envs: int = 8,
    progress: bool = False,
) -> list[Episode]:
    """Run ``agent`` until ``steps`` transitions or ``episodes`` episodes; episodes by index."""
    if (steps is None) == (episodes is None):
        raise ValueError("give exactly one of --steps and --episodes")
    if (steps is not None and steps < 1) or (episodes is not None and episodes < 1):
        raise ValueError("--steps/--episodes must be positive")
    if num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {num_envs}")
    if noise == "gaussian" and not sigma > 0:
        raise ValueError(f"--sigma must be > 0 for gaussian noise, got {sigma}")
    slots = [_Slot(gym.make(env_id)) for _ in range(num_envs)]
    space = slots[0].env.action_space
    budget = steps if steps is not None else episodes
    bar = tqdm(total=budget, unit="step" if steps else "episode", disable=not progress)
    finished: list[Episode] = []
    started = taken = 0

    def start(slot: _Slot) -> None:
        nonlocal started
        if episodes is not None and started >= episodes:
            return
        slot.episode, slot.seed = started, seed + started
        slot.rng = np.random.default_rng([seed, started])
        observation, _ = slot.env.reset(seed=slot.seed)
        slot.observations.append(np.asarray(observation, np.float32))
        started += 1

    for slot in slots:
        start(slot)
    try:
        while True:
            active = [s for s in slots if s.episode >= 0]
            if steps is not None:
                active = active[: steps - taken]
            if not active:
                break
            observations = np.stack([s.observations[-1] for s in active])
            policy_noise = None
            if noise == "policy":
                policy_noise = np.stack([s.rng.standard_normal(space.shape) for s in active])
            actions = agent.act(observations, policy_noise)
            if noise == "gaussian":
                jitter = np.stack([s.rng.standard_normal(space.shape) for s in active])
                actions = np.clip(actions + sigma * jitter, space.low, space.high)
            for slot, action in zip(active, actions, strict=True):
                observation, reward, terminated, truncated, _ = slot.env.step(action)
                slot.actions.append(action.astype(np.float32))
                slot.rewards.append(float(reward))
                slot.observations.append(np.asarray(observation, np.float32))
                taken += 1
                out_of_budget = steps is not None and taken >= steps
                if terminated or truncated or out_of_budget:
                    finished.append(slot.finish(terminated, truncated or not terminated))
                    if episodes is not None:
                        bar.update(1)
                    if not out_of_budget:
                        start(slot)
            if steps is not None:
                bar.update(len(active))
                if taken >= steps:  # cut the episodes still running
                    for slot in slots:
                        if slot.episode >= 0 and slot.actions:
                            finished.append(slot.finish(False, True))
                    break
    finally:
        bar.close()
        for slot in slots:
            slot.env.close()
    return sorted(finished, key=lambda e: e.id)


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
    env = gym.make(config.env)
    agent = load_agent(agent_path, env, config.loader)
    env.close()
    began = time.perf_counter()
    episodes = rollout(
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
    existing = "replace" if config.overwrite else "refuse"
    # the dataset is written atomically: a replaced one stays until the new one is complete
    with output_folder(config.out, "collect", existing=existing, marker=False):
        dataset = collect_dataset(config)
        write_minari_dir(dataset, config.out, overwrite=config.overwrite)
    steps, seconds = dataset.info.num_steps, dataset.source["collect_seconds"]
    print(dataset.summary())
    print(f"collect   {steps} steps in {seconds:.1f} s ({steps / max(seconds, 0.01):.0f} steps/s)")
    print(f"written   {config.out}")
    return dataset
