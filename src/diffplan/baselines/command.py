"""``diffplan baseline``: train a baseline policy per training seed and evaluate it like a planner.

Each training seed ``s`` gets the folder ``OUT/seed-s``: the trained policy and the
same evaluation files as ``diffplan evaluate`` (``results.json``, ``metrics.csv``,
``metrics.json``, ``episodes.csv``, ``report.md``, figures), from the same episode seeds
(``--seed``, ``--seed + 1``, ...), the same episode runner and the same metrics.
``OUT`` gets ``config.json`` and the runs pooled over training seeds (``pooled.md``,
``pooled.json``; see :mod:`diffplan.evaluation.pooled`).

``OUT`` is claimed as every command's folder is (:func:`~diffplan.outputs.output_folder`:
a lock; another command's output refused). A seed folder that already holds a policy
trained with the same options is evaluated again without retraining; one trained with
other options is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from diffplan.atomic import write_json
from diffplan.baselines import bc, offline_rl
from diffplan.checkpoints.store import jsonable
from diffplan.data.episodes import DatasetInfo, TrajectoryDataset
from diffplan.data.sources import load_dataset
from diffplan.evaluation.closed_loop import Controller, run_episodes
from diffplan.evaluation.metrics import summarize
from diffplan.evaluation.pooled import pool, read_metrics, write_pooled
from diffplan.evaluation.report import SettingResult, write_report
from diffplan.outputs import output_folder
from diffplan.runtime import DeviceChoice, git_revision

Algo = Literal["bc", "iql", "td3bc"]
DEFAULT_STEPS = {
    "bc": 20_000,
    "iql": offline_rl.REPRODUCTION_STEPS,
    "td3bc": offline_rl.REPRODUCTION_STEPS,
}


@dataclass
class BaselineConfig:
    """Train a baseline (behaviour cloning, IQL, TD3+BC) and evaluate it like a planner."""

    dataset: str
    """Dataset directory, D4RL .hdf5 file, or Minari dataset id (as `diffplan train`)."""
    algo: Algo = "bc"
    """bc: MLP behaviour cloning; iql / td3bc: d3rlpy's (pip install 'diffplan[baselines]')."""
    out: Path = Path("runs/baseline")
    """Run folder: OUT/seed-N per training seed, pooled.md over them."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds; each trains and evaluates its own policy in OUT/seed-N."""
    steps: int | None = None
    """Gradient steps (default: bc 20,000, about 40 s on one CPU core; iql and td3bc 500,000
    as d3rlpy's reproductions, about 2.4 h and 1.7 h on one core)."""
    episodes: int = 10
    """Evaluation episodes per training seed; episode i is reset with seed + i."""
    seed: int = 0
    """First episode seed (as `diffplan evaluate --seed`)."""
    bc: bc.BCConfig = field(default_factory=bc.BCConfig)
    """Behaviour cloning's network and optimiser."""
    device: DeviceChoice = "auto"
    """d3rlpy's device ('auto': a GPU when there is one); bc trains on the CPU."""
    threads: int | None = None
    """CPU threads of torch (None: torch's default). Use 1 on a busy machine."""
    progress: bool = True
    """Show progress bars."""


def baseline(config: BaselineConfig) -> dict[int, SettingResult]:
    """Run ``diffplan baseline`` (module docstring); returns each training seed's result."""
    if config.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {config.episodes}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"--seeds must be distinct training seeds, got {config.seeds}")
    steps = config.steps if config.steps is not None else DEFAULT_STEPS[config.algo]
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if config.algo != "bc":
        offline_rl.require_d3rlpy()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dataset = load_dataset(config.dataset)
    data = dataset.info
    if data.env_id is None:
        raise ValueError(f"{config.dataset}: the dataset names no environment to evaluate in")
    env = gym.make(data.env_id)
    dataset.check_env(env.observation_space.shape, env.action_space.shape)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    with output_folder(config.out, "baseline", existing="reuse"):
        write_json(
            config.out / "config.json",
            {
                "config": jsonable(asdict(config)),
                "git_revision": git_revision(),
                "dataset": data.to_dict(),
            },
        )
        episode_seeds = [config.seed + i for i in range(config.episodes)]
        results = {}
        for seed in config.seeds:
            folder = config.out / f"seed-{seed}"
            policy = _trained_policy(config, dataset, low, high, steps, seed, folder)
            results[seed] = _evaluate(policy, config, data, episode_seeds, seed, steps, folder)
        records = {f"seed-{s}": read_metrics(config.out / f"seed-{s}") for s in config.seeds}
        header = (
            f"# {config.algo} on {config.dataset}, {steps} steps, training seeds "
            f"{', '.join(map(str, config.seeds))}\n\n{config.episodes} episodes per training seed, "
            f"episode seeds {episode_seeds[0]} to {episode_seeds[-1]}."
        )
        write_pooled(pool(records), config.out, header)
    print(f"written   {config.out}/pooled.md")
    return results


def _trained_policy(
    config: BaselineConfig,
    dataset: TrajectoryDataset,
    low: np.ndarray,
    high: np.ndarray,
    steps: int,
    seed: int,
    folder: Path,
) -> Controller:
    """The policy of ``folder`` when it was trained with these options, else a new one."""
    options = {"algo": config.algo, "dataset": config.dataset, "steps": steps, "seed": seed}
    if config.algo == "bc":
        options["bc"] = asdict(config.bc)
    stamp = folder / "training.json"
    if stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved != jsonable(options):
            raise FileExistsError(
                f"{folder} holds a policy trained with {saved}, not {options}; "
                "choose another --out or remove that folder"
            )
        return bc.load_policy(folder)[0] if config.algo == "bc" else offline_rl.load(folder)
    began = time.perf_counter()
    if config.algo == "bc":
        policy, record = bc.train_bc(dataset, low, high, config.bc, steps=steps, seed=seed)
        bc.save_policy(policy, folder, record)
    else:
        policy = offline_rl.train(
            config.algo,
            dataset,
            steps=steps,
            seed=seed,
            device=config.device,
            folder=folder,
            progress=config.progress,
        )
    seconds = time.perf_counter() - began
    print(f"seed {seed:<4} trained {config.algo} for {steps} steps in {seconds:.0f} s")
    write_json(stamp, options)
    return policy


def _evaluate(
    policy: Controller,
    config: BaselineConfig,
    data: DatasetInfo,
    episode_seeds: list[int],
    seed: int,
    steps: int,
    folder: Path,
) -> SettingResult:
    """``policy`` on ``episode_seeds``, written to ``folder`` as ``diffplan evaluate`` writes."""
    assert data.env_id is not None
    label = config.algo
    began = time.perf_counter()
    episodes = run_episodes(
        policy, data.env_id, episode_seeds, progress=config.progress, description=label
    )
    metrics = summarize(episodes, data)
    seconds = time.perf_counter() - began
    result = SettingResult(
        label, 1, False, episodes, metrics, seconds, preset=label, training_steps=steps
    )
    header = (
        f"# {label} baseline in {folder} (training seed {seed}, {steps} steps)\n\n"
        f"{config.episodes} episodes, seeds {episode_seeds[0]} to {episode_seeds[-1]}. "
        "One action per observation (k = 1)."
    )
    record = {"config": jsonable(asdict(config)), "training_seed": seed, "steps": steps}
    write_report([result], data, folder, header, model=f"{label} baseline", config=record)
    print(
        f"seed {seed:<4} {label}: return {metrics.mean_return:8.1f} ± {metrics.std_return:6.1f}  "
        f"{metrics.percent_of_data:5.1f} % of data  falls {metrics.falls}/{metrics.episodes}"
    )
    return result
