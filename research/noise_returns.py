"""Return and falls of an agent under each kind of action noise (chooses collect's default).

    python research/noise_returns.py --episodes 40

Prints, per noise setting, the mean ± std return over --episodes episodes and
how many fell (terminated before the time limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from diffplan.agents import load_agent
from diffplan.agents.experience import record_episodes

SHARED_TQC = (
    Path(__file__).resolve().parents[2]
    / "shared/data/walker2d-agents/tqc-Walker2d-v3/Walker2d-v3.zip"
)
SETTINGS = (
    ("none", 0.0),
    ("gaussian", 0.02),
    ("gaussian", 0.03),
    ("gaussian", 0.05),
    ("gaussian", 0.1),
    ("policy", 0.0),
)


@dataclass
class Options:
    agent: Path = SHARED_TQC
    env: str = "Walker2d-v5"
    episodes: int = 40
    seed: int = 200
    num_envs: int = 10


def main(options: Options) -> None:
    torch.set_num_threads(1)  # as `diffplan collect` does
    env = gym.make(options.env)
    agent = load_agent(options.agent, env)
    print(f"{options.agent}  {options.env}  {options.episodes} episodes, seed {options.seed}")
    for noise, sigma in SETTINGS:
        episodes = record_episodes(
            agent,
            options.env,
            episodes=options.episodes,
            noise=noise,
            sigma=sigma or 0.1,
            seed=options.seed,
            num_envs=options.num_envs,
        )
        returns = np.array([e.total_return for e in episodes])
        label = f"{noise} sigma={sigma}" if noise == "gaussian" else noise
        falls = sum(e.terminated for e in episodes)
        print(f"{label:<22} {returns.mean():7.0f} ± {returns.std():5.0f}   falls {falls}")


if __name__ == "__main__":
    main(tyro.cli(Options))
