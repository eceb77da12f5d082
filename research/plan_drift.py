"""Open-loop drift of plans: do a plan's actions lead to its states in the real simulator?

    python research/plan_drift.py --dataset DATA --diffusion CKPT \
        [--inverse-dynamics RUN] [--dynamics RUN]

For --windows start states drawn from the dataset (seeded; states whose observed
velocities are clipped cannot be restored and are skipped), samples one plan each
(the default planner's sampler), puts the MuJoCo simulator in the start state and
runs the plan's actions open loop. Prints, for each step h of the plan, the RMS
distance (in the data's standard deviation of each state dimension, so that models
with different normalisers compare) between the planned state s_h and the state the
simulator reached, and how many rollouts fell within the plan. This is what an
effective window k relies on: the first k actions must keep the walker near the plan.

Rows: the planned actions; with --inverse-dynamics, the actions an inverse dynamics
model derives from consecutive planned states; and the dataset's own windows replayed
(checks that the state is restored exactly: ~0 unless a velocity reaches the clip). Then the
one-step error: from each planned state s_h-1, the planned action in the simulator
against s_h, and with --dynamics the forward model's estimate of the same (its
consistency error, which plan selection uses without the simulator; in the model's
normalised units).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.loading import load_generator
from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.normalizers import Normalizer
from diffplan.data.sources import load_dataset
from diffplan.data.windows import WindowDataset, transitions
from diffplan.diffusion import TrajectoryGenerator
from diffplan.planning import PlanningConfig
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency

VELOCITY_CLIP = 10.0  # gymnasium's MuJoCo locomotion observations clip velocities to this


@dataclass
class Options:
    dataset: str
    """Dataset source the model was trained on (start states are drawn from it)."""
    diffusion: Path
    """Diffusion run or checkpoint."""
    inverse_dynamics: Path | None = None
    """Inverse dynamics run: also replay the actions it derives from the planned states."""
    dynamics: Path | None = None
    """Forward dynamics run: also print its consistency error per plan step."""
    windows: int = 200
    """Start states drawn from the dataset."""
    threads: int = 1
    """torch CPU threads."""


def set_state(env: gym.Env, observation: np.ndarray) -> None:
    """Put a MuJoCo locomotion env in the state an observation describes (positions after
    the excluded root coordinates, then velocities; the excluded ones set to 0)."""
    model = env.unwrapped.model
    positions = len(observation) - model.nv
    if not 0 <= model.nq - positions <= 2:
        raise ValueError(f"observations of {len(observation)} dims are not (qpos[k:], qvel)")
    qpos = np.concatenate([np.zeros(model.nq - positions), observation[:positions]])
    env.unwrapped.set_state(qpos, observation[positions:])


def restorable_windows(
    dataset: TrajectoryDataset, generator: TrajectoryGenerator, env: gym.Env, count: int, seed: int
) -> np.ndarray:
    """Up to ``count`` data windows ``(n, H, D)`` (raw units, drawn with ``seed``) whose first
    state the simulator can be put in: observations clip velocities (Walker2d: to +-10),
    and a state with a clipped one cannot be restored."""
    windows = WindowDataset(dataset, generator.horizon, normalizer=generator.normalizer)
    draw = torch.Generator().manual_seed(seed)
    batch = windows.get_batch(torch.randint(len(windows), (4 * count,), generator=draw))
    data = generator.normalizer.unnormalize(batch.window).numpy()
    obs_dim = generator.obs_dim
    velocities = data[:, 0, obs_dim - env.unwrapped.model.nv : obs_dim]
    return data[np.abs(velocities).max(axis=1) < VELOCITY_CLIP][:count]


def simulate(
    env: gym.Env, start: np.ndarray, steps: int, policy: Callable[[np.ndarray, int], np.ndarray]
) -> tuple[np.ndarray, bool]:
    """States ``(steps, obs_dim)`` reached from ``start`` taking ``policy(state, i)`` at step
    ``i`` (the last state repeated after a fall), and whether it fell."""
    set_state(env, start)
    state, states, fell = start, [], False
    for i in range(steps):
        if not fell:
            state, _, fell, _, _ = env.step(policy(state, i))
        states.append(state)
    return np.array(states), bool(fell)


def replay(env: gym.Env, start: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, bool]:
    """:func:`simulate` of ``actions (n, act_dim)``, open loop."""
    return simulate(env, start, len(actions), lambda _, i: actions[i])


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    generator = load_generator(options.diffusion)
    meta = ckpt.read_meta(ckpt.resolve(options.diffusion))
    env = gym.make(meta.dataset["env_id"])
    env.reset(seed=0)
    dataset = load_dataset(options.dataset)
    # Errors in the data's standard deviations, whatever normaliser the model was trained with.
    state_std = Normalizer.fit(transitions(dataset)[:, : generator.obs_dim]).scale
    data = restorable_windows(dataset, generator, env, options.windows, seed=0)
    obs_dim = generator.obs_dim
    plans = generator.sample(
        data[:, 0, :obs_dim],
        sampler=PlanningConfig().sampler,
        generator=torch.Generator().manual_seed(1),
    )
    rows = {"planned actions": plans[:, :-1, obs_dim:].numpy()}
    if options.inverse_dynamics is not None:
        rows["inverse dynamics"] = ActionsFromStates(options.inverse_dynamics)(
            plans[:, :, :obs_dim]
        ).numpy()
    rows["data replayed"] = data[:, :-1, obs_dim:]
    targets = {"data replayed": data[:, 1:, :obs_dim]}
    low, high = env.action_space.low, env.action_space.high

    steps = " ".join(f"{f'h={h}':>6}" for h in range(1, generator.horizon))
    print(
        f"{options.diffusion}: RMS state error (in the data's standard deviations) at plan "
        f"step h; falls of {len(data)}"
    )
    print(f"{'actions':<18} {steps}  falls")
    for label, actions in rows.items():
        reached, falls = [], 0
        for start, plan_actions in zip(data[:, 0, :obs_dim], actions, strict=True):
            path, fell = replay(env, start, np.clip(plan_actions, low, high))
            reached.append(path)
            falls += fell
        goal = targets.get(label, plans[:, 1:, :obs_dim].numpy())
        error = (np.array(reached) - goal) / state_std
        rms = np.sqrt((error**2).mean(axis=(0, 2)))
        print(f"{label:<18} " + " ".join(f"{e:6.3f}" for e in rms) + f"  {falls:5d}")
    # One step: from planned state s_h-1, does the planned action a_h-1 reach s_h?
    one_step = np.zeros(generator.horizon - 1)
    for plan in plans.numpy():
        for h in range(1, generator.horizon):
            reached, _ = replay(
                env, plan[h - 1, :obs_dim], np.clip(plan[h - 1 : h, obs_dim:], low, high)
            )
            error = (reached[0] - plan[h, :obs_dim]) / state_std
            one_step[h - 1] += (error**2).mean() / len(plans)
    print("one step from the planned state s_h-1 with the planned action a_h-1:")
    print(f"{'simulator':<18} " + " ".join(f"{e:6.3f}" for e in np.sqrt(one_step)))
    if options.dynamics is not None:
        forward = ForwardConsistency(options.dynamics)
        per_step = [
            forward(plans[:, h - 1 : h + 1], 1).mean().sqrt().item()
            for h in range(1, generator.horizon)
        ]
        print(f"{'forward model':<18} " + " ".join(f"{e:6.3f}" for e in per_step))
    env.close()


if __name__ == "__main__":
    main(tyro.cli(Options))
