"""How tracked k = 1 episodes fall: height, lean and tracking error before the end.

    python research/fall_anatomy.py --dataset DATA --diffusion CKPT \
        --inverse-dynamics RUN [--episodes 10] [--figure falls.png]

Runs the tracked planner at k = 1 (`--planning.track-states`: each action from the real
state and the next planned state; options of `diffplan evaluate`'s planner apply) and
records, every step, the observation and the planned next state it aimed at. For every
episode it prints the tracking error (RMS distance, in the data's standard deviation of
each state dimension, between the planned next state and the state reached) over the
episode and over its last `--last` steps, and for the episodes that fell the torso height
and angle at the end (Walker2d and Hopper: observation 0 is the height, 1 the angle).
Then the data's side: which share of the dataset's steps is as low as the falls were
n steps before the end, and which share of those belongs to episodes that fell. With
--figure it plots height and tracking error against steps before the end of each fall.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro
from matplotlib.figure import Figure

from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.loading import load_generator
from diffplan.data.episodes import DatasetInfo
from diffplan.data.normalizers import Normalizer
from diffplan.data.sources import load_dataset
from diffplan.data.windows import transitions
from diffplan.evaluation.closed_loop import run_episodes
from diffplan.planning import DiffusionPlanner, PlanningConfig
from diffplan.planning.dynamics import ActionsFromStates


@dataclass
class Options:
    dataset: str
    """Dataset source the model was trained on (its state scale and its falls)."""
    diffusion: Path
    """Diffusion run or checkpoint."""
    inverse_dynamics: Path
    """Inverse dynamics run (the tracked planner needs it)."""
    episodes: int = 10
    """Episodes, side by side."""
    seed: int = 0
    """First episode seed (also seeds the sampler)."""
    last: int = 40
    """Steps before a fall that count as its approach."""
    planning: PlanningConfig = field(default_factory=lambda: PlanningConfig(track_states=True))
    """The planner (k = 1; states are always tracked)."""
    figure: Path | None = None
    """Write the plot of the falls here (PNG)."""
    threads: int = 1
    """torch CPU threads."""


class Recorder:
    """Wraps a k = 1 planner; keeps, per environment, each observation and its target."""

    def __init__(self, planner: DiffusionPlanner, num_envs: int, obs_dim: int) -> None:
        self.planner, self.obs_dim = planner, obs_dim
        self.observations: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.targets: list[list[np.ndarray]] = [[] for _ in range(num_envs)]

    def reset(self, num_envs: int) -> None:
        self.planner.reset(num_envs)

    def act(self, observations: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        actions = self.planner.act(observations, env_ids)
        plans = self.planner.last_plans  # k = 1: planned this step for every env in env_ids
        for row, env in enumerate(env_ids):
            self.observations[env].append(np.asarray(observations[row]))
            self.targets[env].append(plans[row, 1, : self.obs_dim].numpy())
        return actions


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    planning = replace(options.planning, track_states=True)
    if planning.temporal_ensemble > 1:
        raise SystemExit("fall_anatomy records the newest plan's target: drop --temporal-ensemble")
    generator = load_generator(options.diffusion, backend=planning.backend)
    data = DatasetInfo(**ckpt.read_meta(ckpt.resolve(options.diffusion)).dataset)
    dataset = load_dataset(options.dataset)
    state_std = Normalizer.fit(transitions(dataset)[:, : generator.obs_dim]).scale
    env = gym.make(data.env_id)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    planner = planning.make_planner(
        generator,
        1,
        inverse_dynamics=ActionsFromStates(options.inverse_dynamics),
        action_low=low,
        action_high=high,
        seed=options.seed,
    )
    seeds = list(range(options.seed, options.seed + options.episodes))
    recorder = Recorder(planner, len(seeds), generator.obs_dim)
    results = run_episodes(recorder, data.env_id, seeds)

    falls = []
    print("seed  steps  fell  height/angle at the end  tracking error: episode / last steps")
    for env, result in enumerate(results):
        observed = np.stack(recorder.observations[env])
        targets = np.stack(recorder.targets[env])
        # target t aimed at observation t + 1 (the last target's outcome is not recorded)
        error = np.sqrt((((observed[1:] - targets[:-1]) / state_std) ** 2).mean(axis=1))
        end = observed[-1]
        print(
            f"{result.seed:4d}  {result.length:5d}  {'yes' if result.fell else 'no ':3s}"
            f"   {end[0]:5.2f} / {end[1]:5.2f}"
            f"                {error.mean():.3f} / {error[-options.last :].mean():.3f}"
        )
        if result.fell:
            falls.append((observed[-options.last :, 0], error[-options.last :]))
    print(f"{len(falls)} of {len(results)} episodes fell")
    if not falls:
        return
    heights = np.concatenate([e.observations[:-1, 0] for e in dataset])
    fell = np.concatenate([np.full(len(e), e.terminated) for e in dataset])
    print(
        f"data: {sum(e.terminated for e in dataset)} of {len(dataset)} episodes fell; "
        "the steps as low as the falls' median height n steps before the end:"
    )
    for before in sorted({options.last, options.last // 2, options.last // 4}, reverse=True):
        threshold = float(np.median([height[max(-len(height), -before)] for height, _ in falls]))
        below = heights < threshold
        share = fell[below].mean() if below.any() else float("nan")
        print(
            f"  n = {before:3d}: height {threshold:.2f}, {below.mean():.3%} of the data's steps "
            f"below it, {share:.0%} of those in episodes that fell"
        )
    if options.figure is not None:
        figure = Figure(figsize=(9, 3.5))
        height_axes, error_axes = figure.subplots(1, 2)
        for height, error in falls:
            height_axes.plot(np.arange(-len(height) + 1, 1), height, alpha=0.8)
            error_axes.plot(np.arange(-len(error), 0), error, alpha=0.8)
        height_axes.set(xlabel="steps before the fall", ylabel="torso height", title="height")
        error_axes.set(
            xlabel="steps before the fall",
            ylabel="RMS error (data std)",
            title="planned next state vs reached",
        )
        figure.tight_layout()
        figure.savefig(options.figure, dpi=100)
        print(f"written   {options.figure}")


if __name__ == "__main__":
    main(tyro.cli(Options))
