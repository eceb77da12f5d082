"""Closed-loop planning speed: env steps/s at k = 1, unguided and guided, 1 and 10 episodes.

    python benchmarks/closed_loop.py                       # report-size model, random weights
    python benchmarks/closed_loop.py --diffusion RUN --value RUN

Speed does not depend on the weights, so by default the networks are freshly
initialised at the report's size (H = 8, dim 32, mults (1, 2, 4, 8), T_d = 20).
Each measurement runs --steps environment steps of Walker2d-v5 per episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from diffplan.data import Normalizer
from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.sampling import TrajectoryGenerator
from diffplan.models import TemporalUnet, ValueNetwork
from diffplan.planning.guides import GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner
from diffplan.training.loading import load_generator, load_value_network


@dataclass
class Options:
    diffusion: Path | None = None
    """Trained diffusion run (default: random report-size network)."""
    value: Path | None = None
    """Trained value run (default: random report-size network)."""
    steps: int = 50
    """Environment steps per episode measured."""
    parallel: tuple[int, ...] = (1, 10)
    """Numbers of episodes run side by side."""
    candidates: int = 64
    """Candidates per decision in the guided setting."""
    threads: int = 2


def networks(options: Options) -> tuple[TrajectoryGenerator, torch.nn.Module]:
    if options.diffusion is not None and options.value is not None:
        return load_generator(options.diffusion), load_value_network(options.value)
    obs_dim, act_dim, horizon = 17, 6, 8
    model = TemporalUnet(horizon, obs_dim + act_dim).eval()
    normalizer = Normalizer("gaussian", np.zeros(obs_dim + act_dim), np.ones(obs_dim + act_dim))
    generator = TrajectoryGenerator(model, DDPMScheduler(20), normalizer, obs_dim=obs_dim)
    return generator, ValueNetwork(horizon, obs_dim + act_dim).eval()


def measure(planner: DiffusionPlanner, parallel: int, steps: int) -> float:
    envs = [gym.make("Walker2d-v5") for _ in range(parallel)]
    observations = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    planner.reset(parallel)
    ids = np.arange(parallel)
    began = time.perf_counter()
    for _ in range(steps):
        actions = planner.act(observations, ids)
        observations = np.stack([env.step(a)[0] for env, a in zip(envs, actions, strict=True)])
    return steps / (time.perf_counter() - began)


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    generator, value_net = networks(options)
    print(f"threads {torch.get_num_threads()}, k = 1, {options.steps} steps per episode")
    for parallel in options.parallel:
        unguided = DiffusionPlanner(generator, effective_window=1)
        guided = DiffusionPlanner(
            generator,
            effective_window=1,
            num_candidates=options.candidates,
            value_net=value_net,
            guide=ValueGuide(value_net, GuideConfig()),
        )
        for label, planner in (("unguided", unguided), (f"guided x{options.candidates}", guided)):
            rate = measure(planner, parallel, options.steps)
            print(
                f"{label:<12} {parallel:>2} episodes  {rate:7.2f} env steps/s per episode  "
                f"({rate * parallel:7.2f} in all)"
            )


if __name__ == "__main__":
    main(tyro.cli(Options))
