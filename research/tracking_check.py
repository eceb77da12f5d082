"""Does the forward model's simulated tracking pick the plans the walker can follow?

    python research/tracking_check.py --dataset DATA --diffusion CKPT \
        --inverse-dynamics RUN --dynamics RUN [--value RUN] [--rows N]

For --starts start states drawn from the dataset (as in plan_drift.py), samples
--candidates plans each (the default planner's sampler) and follows each plan's first
--rows states in the MuJoCo simulator, closed loop, as `--planning.track-states` does: each
action is the inverse dynamics model's ``f^-1(reached state, next planned state)``. It
records how far the reached states end from the plan (RMS over the rows, in the data's
standard deviations) and whether the walker fell, and sets beside them the selection
rules' scores computed without the simulator: the forward model's simulated tracking
(`--planning.consistency.simulate-tracking`), its one-step error of the planned actions
(the default `--dynamics` check) and, with --value, the value network.

Prints, for each rule, the Spearman rank correlation between its score and the real
tracking error among one start's candidates (averaged over starts; a good rule is
strongly positive, the value network negative where a high value means a trackable
plan), and the real tracking error and falls of the candidate each rule would choose,
against a random candidate and the best one in hindsight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro
from plan_drift import restorable_windows, simulate  # this folder is on the path when run
from tqdm import tqdm

from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.loading import load_generator, load_network
from diffplan.data.normalizers import Normalizer
from diffplan.data.sources import load_dataset
from diffplan.data.windows import transitions
from diffplan.planning import PlanningConfig
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency


@dataclass
class Options:
    dataset: str
    """Dataset source the model was trained on (start states are drawn from it)."""
    diffusion: Path
    """Diffusion run or checkpoint."""
    inverse_dynamics: Path
    """Inverse dynamics run: derives the tracking actions."""
    dynamics: Path
    """Forward dynamics run: simulates the tracking."""
    value: Path | None = None
    """Value run: also rank the candidates by value."""
    starts: int = 50
    """Start states drawn from the dataset."""
    candidates: int = 16
    """Plans sampled per start state."""
    rows: int | None = None
    """Planned states followed (default: H - 1)."""
    seed: int = 0
    """Seeds the start states and the sampler."""
    threads: int = 1
    """torch CPU threads."""


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two ``(n,)`` samples without ties."""
    return float(np.corrcoef(a.argsort().argsort(), b.argsort().argsort())[0, 1])


def track(
    env: gym.Env, inverse: ActionsFromStates, start: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, bool]:
    """States ``(n, obs_dim)`` reached following ``targets (n, obs_dim)`` from ``start`` with
    inverse-dynamics actions (the last state repeated after a fall), and whether it fell."""
    low, high = env.action_space.low, env.action_space.high

    def follow(state: np.ndarray, i: int) -> np.ndarray:
        pair = torch.as_tensor(np.stack([state, targets[i]])[None], dtype=torch.float32)
        return np.clip(inverse(pair)[0, 0].numpy(), low, high)

    return simulate(env, start, len(targets), follow)


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    generator = load_generator(options.diffusion)
    meta = ckpt.read_meta(ckpt.resolve(options.diffusion))
    rows = options.rows or generator.horizon - 1
    if not 1 <= rows <= generator.horizon - 1:
        raise ValueError(f"--rows must be in 1..{generator.horizon - 1}, got {rows}")
    env = gym.make(meta.dataset["env_id"])
    env.reset(seed=options.seed)
    dataset = load_dataset(options.dataset)
    state_std = Normalizer.fit(transitions(dataset)[:, : generator.obs_dim]).scale
    obs_dim, count = generator.obs_dim, options.candidates
    data = restorable_windows(dataset, generator, env, options.starts, options.seed)
    starts = data[:, 0, :obs_dim]
    inverse = ActionsFromStates(options.inverse_dynamics)
    forward = ForwardConsistency(options.dynamics)
    value_net = load_network(options.value, "value")[0] if options.value else None
    low = torch.as_tensor(env.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(env.action_space.high, dtype=torch.float32)

    scores: dict[str, list[np.ndarray]] = {"simulated tracking": [], "one-step error": []}
    if value_net is not None:
        scores["value (minus)"] = []
    errors, falls = [], []
    sample = torch.Generator().manual_seed(options.seed + 1)
    for start in tqdm(starts, desc="start states"):
        plans = generator.sample(
            np.repeat(start[None], count, axis=0),
            sampler=PlanningConfig().sampler,
            generator=sample,
        )
        scores["simulated tracking"].append(
            forward.tracking_error(plans, rows, inverse, low, high).numpy()
        )
        scores["one-step error"].append(forward(plans, rows).numpy())
        if value_net is not None:
            with torch.inference_mode():
                normed = generator.normalizer.normalize(plans)
                steps = torch.zeros(count, dtype=torch.long)
                scores["value (minus)"].append(-value_net(normed, steps).numpy())
        paths = [track(env, inverse, start, plan[1 : rows + 1, :obs_dim]) for plan in plans.numpy()]
        reached = np.array([path for path, _ in paths])
        distance = (reached - plans[:, 1 : rows + 1, :obs_dim].numpy()) / state_std
        errors.append(np.sqrt((distance**2).mean(axis=(1, 2))))
        falls.append(np.array([fell for _, fell in paths]))
    env.close()
    real, fell = np.array(errors), np.array(falls)  # (starts, candidates)
    print(
        f"{options.diffusion}: {len(starts)} start states x {count} candidates, {rows} planned "
        "states tracked in the simulator"
    )
    print(f"{'rule':<20} {'Spearman':>8} {'chosen: RMS error':>18} {'falls':>6}")
    picks = np.arange(len(starts))
    for name, values in scores.items():
        score = np.array(values)
        rho = np.mean([rank_correlation(s, r) for s, r in zip(score, real, strict=True)])
        best = score.argmin(axis=1)
        print(
            f"{name:<20} {rho:8.3f} {real[picks, best].mean():18.3f} {fell[picks, best].sum():6d}"
        )
    print(f"{'any one (mean)':<20} {'':>8} {real.mean():18.3f} {fell.mean(axis=1).sum():6.1f}")
    hindsight = real.argmin(axis=1)
    print(
        f"{'best in hindsight':<20} {'':>8} {real[picks, hindsight].mean():18.3f} "
        f"{fell[picks, hindsight].sum():6d}"
    )


if __name__ == "__main__":
    main(tyro.cli(Options))
