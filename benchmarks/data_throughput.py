"""Data-layer throughput: collection (env steps/s) and window batches (batches/s).

    python benchmarks/data_throughput.py                      # shared TQC agent, defaults
    python benchmarks/data_throughput.py --dataset DIR        # windows of a real dataset

Prints one line per measurement. Collection uses the agent's batched policy
with --num-envs environments stepped side by side (1,000,000 steps at S steps/s
take 1e6 / S seconds). Window batches are drawn uniformly at --batch-size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from diffplan.agents import load_agent
from diffplan.collect import record_episodes
from diffplan.data import TrajectoryDataset, WindowDataset, make_episode
from diffplan.data.sources import load_dataset

SHARED_TQC = (
    Path(__file__).resolve().parents[2]
    / "shared/data/walker2d-agents/tqc-Walker2d-v3/Walker2d-v3.zip"
)


@dataclass
class Options:
    agent: Path = SHARED_TQC
    """Agent zip for the collection benchmark."""
    steps: int = 20_000
    """Transitions collected per --num-envs setting."""
    num_envs: tuple[int, ...] = (1, 8, 16)
    """Parallel environment counts to compare."""
    dataset: str | None = None
    """Dataset for the window benchmark; default: a synthetic Walker2d-sized 1M-step one."""
    horizons: tuple[int, ...] = (8, 32)
    batch_size: int = 256
    batches: int = 2000


def synthetic_walker(steps: int = 1_000_000) -> TrajectoryDataset:
    rng = np.random.default_rng(0)
    episodes = [
        make_episode(
            rng.normal(size=(1001, 17)), rng.uniform(-1, 1, (1000, 6)), rng.normal(size=1000), id=i
        )
        for i in range(steps // 1000)
    ]
    return TrajectoryDataset(episodes, env_id="Walker2d-v5", name="synthetic-walker")


def main(options: Options) -> None:
    torch.set_num_threads(1)  # as `diffplan collect` does
    print(f"torch threads: {torch.get_num_threads()}")
    if options.agent.exists():
        env = gym.make("Walker2d-v5")
        agent = load_agent(options.agent, env)
        for num_envs in options.num_envs:
            began = time.perf_counter()
            record_episodes(agent, "Walker2d-v5", steps=options.steps, num_envs=num_envs)
            rate = options.steps / (time.perf_counter() - began)
            print(
                f"collect  num_envs={num_envs:>3}  {rate:8.0f} steps/s"
                f"  (1M steps in {1e6 / rate / 60:.1f} min)"
            )
    else:
        print(f"collect  skipped: {options.agent} not found")

    began = time.perf_counter()
    dataset = load_dataset(options.dataset) if options.dataset else synthetic_walker()
    print(f"load     {dataset.info.num_steps} steps in {time.perf_counter() - began:.1f} s")
    generator = torch.Generator().manual_seed(0)
    for horizon in options.horizons:
        began = time.perf_counter()
        windows = WindowDataset(dataset, horizon)
        built = time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(options.batches):
            windows.sample(options.batch_size, generator)
        rate = options.batches / (time.perf_counter() - began)
        print(
            f"windows  H={horizon:>2}  build {built:5.1f} s  "
            f"{rate:8.0f} batches/s at batch {options.batch_size}"
        )


if __name__ == "__main__":
    main(tyro.cli(Options))
