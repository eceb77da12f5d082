"""Closed-loop planning speed at k = 1: each speed-up against the report's planner, in one run.

    python benchmarks/plan_speed.py --threads 1                  # issue-5 model, random weights
    python benchmarks/plan_speed.py --diffusion RUN --value RUN  # trained networks

For every configuration it prints decisions/s with one environment (batch 1),
env steps/s per environment with --parallel environments side by side (their
plans batched), the speed-up over the baseline (DDPM, 20 steps, eager), and the
share of this CPU's FLOP limit reached: FLOPs per decision (counted by
``torch.utils.flop_counter`` on the eager equivalent) over the GFLOP/s of a
large matrix product on the same threads. Speed does not depend on the
weights, so by default the networks are freshly initialised (H = 8, dim 32,
mults (1, 2, 4), T_d = 20: the model of issue 5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch.utils.flop_counter import FlopCounterMode

from diffplan.checkpoints import load_generator, load_value_network
from diffplan.data import Normalizer
from diffplan.diffusion import DDPMScheduler, SamplerConfig, TrajectoryGenerator
from diffplan.models import TemporalUnet, ValueNetwork
from diffplan.planning import ExperimentalPlanning, GuideConfig, PlanningConfig, WarmStart


@dataclass
class Options:
    diffusion: Path | None = None
    """Trained diffusion run (default: random weights of the size below)."""
    value: Path | None = None
    """Trained value run (default: random weights)."""
    dim_mults: tuple[int, ...] = (1, 2, 4)
    """U-Net width multipliers of the random networks."""
    parallel: int = 10
    """Environments side by side in the batched measurement."""
    seconds: float = 3.0
    """Minimum time measured per configuration and batch size (after 2 warm-up decisions)."""
    threads: int = 1
    """torch (and ONNX Runtime) CPU threads."""
    guided: bool = True
    """Also measure value-guided configurations (64 candidates at the baseline)."""


# The report's planner: DDPM, 20 steps, eager, cold, 64 candidates, 2 guide steps.
BASELINE = PlanningConfig(sampler=SamplerConfig("ddpm", 20), backend="eager")
WARM = ExperimentalPlanning(warm_start=WarmStart(step=4, steps=2))
UNGUIDED = {
    "baseline: ddpm 20, eager": BASELINE,
    "ddpm 20, matrix": replace(BASELINE, backend="matrix"),
    "ddpm 20, onnx": replace(BASELINE, backend="onnx"),
    "ddpm 20, hybrid": replace(BASELINE, backend="hybrid"),
    "ddim 5, eager": replace(BASELINE, sampler=SamplerConfig("ddim", 5)),
    "dpm-solver++ 5, eager": replace(BASELINE, sampler=SamplerConfig("dpm-solver++", 5)),
    "dpm-solver++ 5, onnx": replace(
        BASELINE, sampler=SamplerConfig("dpm-solver++", 5), backend="onnx"
    ),
    "dpm-solver++ 5, hybrid": replace(
        BASELINE, sampler=SamplerConfig("dpm-solver++", 5), backend="hybrid"
    ),
    "dpm-solver++ 3, hybrid": replace(
        BASELINE, sampler=SamplerConfig("dpm-solver++", 3), backend="hybrid"
    ),
    "dpm-solver++ 5, hybrid, warm 4/2": replace(
        BASELINE, sampler=SamplerConfig("dpm-solver++", 5), backend="hybrid", experimental=WARM
    ),
}
FAST_GUIDED = replace(
    BASELINE,
    sampler=SamplerConfig("dpm-solver++", 5),
    guide=GuideConfig(n_guide_steps=1),
    backend="hybrid",
)
GUIDED = {
    "baseline guided: ddpm 20, x64, 2 guide steps": BASELINE,
    "guided dpm-solver++ 5, x64, 1 guide step, hybrid": FAST_GUIDED,
    "guided dpm-solver++ 5, x16, 1 guide step, hybrid": replace(FAST_GUIDED, candidates=16),
    "guided dpm-solver++ 5, x16, hybrid, warm 4/2": replace(
        FAST_GUIDED, candidates=16, experimental=WARM
    ),
    "guided dpm-solver++ 5, x8, hybrid, warm 4/2": replace(
        FAST_GUIDED, candidates=8, experimental=WARM
    ),
}


def networks(options: Options) -> tuple[TrajectoryGenerator, torch.nn.Module]:
    if options.diffusion is not None and options.value is not None:
        return load_generator(options.diffusion), load_value_network(options.value)
    torch.manual_seed(0)
    obs_dim, act_dim, horizon = 17, 6, 8
    model = TemporalUnet(horizon, obs_dim + act_dim, dim_mults=options.dim_mults).eval()
    normalizer = Normalizer("gaussian", np.zeros(obs_dim + act_dim), np.ones(obs_dim + act_dim))
    generator = TrajectoryGenerator(model, DDPMScheduler(20), normalizer, obs_dim=obs_dim)
    value = ValueNetwork(horizon, obs_dim + act_dim, dim_mults=options.dim_mults).eval()
    return generator, value


def peak_gflops() -> float:
    """GFLOP/s of a 1024^3 float32 matrix product on torch's current threads."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    began, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        a @ b
    return 2 * 1024**3 * repeats / (time.perf_counter() - began) / 1e9


def closed_loop_rate(planner, parallel: int, seconds: float) -> float:
    """Env steps/s per environment at k = 1 with ``parallel`` Walker2d-v5 envs."""
    envs = [gym.make("Walker2d-v5") for _ in range(parallel)]
    observations = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    planner.reset(parallel)
    ids = np.arange(parallel)

    def step() -> None:
        nonlocal observations
        actions = planner.act(observations, ids)
        for i, (env, action) in enumerate(zip(envs, actions, strict=True)):
            observation, _, terminated, truncated, _ = env.step(action)
            observations[i] = env.reset()[0] if terminated or truncated else observation

    step(), step()  # warm-up (and the first, cold plans)
    began, steps = time.perf_counter(), 0
    while steps < 3 or time.perf_counter() - began < seconds:
        step()
        steps += 1
    return steps / (time.perf_counter() - began)


def flops_per_decision(generator, config: PlanningConfig, value_net) -> float:
    """FLOPs of one batch-1 decision (a warm one where warm-started), counted eagerly.

    Guidance is counted apart (``FlopCounterMode`` cannot follow ``autograd.grad``): one
    value forward + backward over the candidates per guide step.
    """
    eager = replace(config, backend="eager", guide=replace(config.guide, n_guide_steps=0))
    planner = eager.make_planner(generator, 1, value_net=value_net)
    planner.reset(1)
    observation = np.zeros((1, generator.obs_dim), np.float32)
    generator.set_backend("eager")
    planner.act(observation, np.arange(1))  # the cold first plan
    with FlopCounterMode(display=False) as counter:
        planner.act(observation, np.arange(1))
    flops = counter.get_total_flops()
    if value_net is None:
        return flops
    x = torch.zeros(planner.proposal.candidates, generator.horizon, generator.normalizer.dim)
    x.requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        value_net(x, torch.zeros(len(x), dtype=torch.long)).sum().backward()
    # the measured decision is warm where warm starts are on
    start = config.experimental.warm_start.step
    proposal = planner.proposal
    sampler = proposal.warm_sampler() if start is not None else proposal.sampler
    chain = generator.timesteps(sampler, start=start)
    guided_steps = sum(t >= config.guide.t_stopgrad for t in chain.tolist())
    return flops + config.guide.n_guide_steps * guided_steps * counter.get_total_flops()


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    generator, value_net = networks(options)
    peak = peak_gflops()
    print(
        f"threads {options.threads}, k = 1, matrix-product peak {peak:.1f} GFLOP/s; "
        f"batch-1 decisions/s | env steps/s per env with {options.parallel} envs"
    )
    header = (
        f"{'configuration':<52} {'dec/s':>7} {'x base':>7} {'% FLOP':>7} "
        f"{'steps/s/env':>12} {'x base':>7}"
    )
    settings = [(label, config, None) for label, config in UNGUIDED.items()]
    if options.guided:
        settings += [(label, config, value_net) for label, config in GUIDED.items()]
    print(header)
    baselines: dict[bool, tuple[float, float]] = {}
    for label, config, value in settings:
        flops = flops_per_decision(generator, config, value)
        generator.set_backend(config.backend)
        planner = config.make_planner(generator, 1, value_net=value)
        single = closed_loop_rate(planner, 1, options.seconds)
        batched = closed_loop_rate(planner, options.parallel, options.seconds)
        base_single, base_batched = baselines.setdefault(value is not None, (single, batched))
        limit = peak * 1e9 / flops  # decisions/s if every FLOP ran at the peak rate
        print(
            f"{label:<52} {single:7.1f} {single / base_single:7.1f} {100 * single / limit:6.1f}%"
            f" {batched:12.1f} {batched / base_batched:7.1f}"
        )


if __name__ == "__main__":
    main(tyro.cli(Options))
