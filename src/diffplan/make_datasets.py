"""``diffplan make-datasets``: D4RL's dataset qualities, built here, in Minari's layout.

For ``--env E`` (task family ``F``, e.g. ``hopper``) each quality is a dataset
directory ``OUT/F/QUALITY-v0`` (Minari id ``diffplan/F/QUALITY-v0``) whose metadata
carries its recipe and the seconds it took:

* ``expert``: ``--steps`` transitions of ``--expert-agent``.
* ``medium``: ``--steps`` transitions of the ``train-agent`` snapshot whose measured
  return (deterministic, ``--eval-episodes``) is nearest ``--medium-fraction`` (D4RL:
  about a third) of the expert's measured return.
* ``medium-replay``: every episode the training run played up to that snapshot.
* ``medium-expert``: the medium episodes followed by the expert episodes.

Medium data needs a training run: ``OUT/F/train-agent-ALGORITHM`` (``diffplan train-agent
--record``, run here for ``--training-steps`` unless complete; hours for real budgets).
Every part is skipped when complete (a dataset when its directory exists, a training
run when its model card does, a snapshot's evaluation when its JSON does), so an
interrupted command resumes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffplan.agents.replay import replay_upto, snapshots
from diffplan.agents.train_expert import (
    Algorithm,
    TrainAgentConfig,
    evaluate_agent,
    train_agent,
)
from diffplan.atomic import write_json
from diffplan.collect import DEFAULT_SIGMA, CollectConfig, NoiseKind, collect_dataset
from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.minari_format import is_minari_dir, read_minari_dir, write_minari_dir
from diffplan.tasks import DEFAULT_ENV, QUALITIES, Quality, Task, require_agent, task_for


@dataclass
class MakeDatasetsConfig:
    """Build D4RL-style datasets (expert, medium, medium-replay, medium-expert) of one task."""

    out: Path = Path("data")
    """Root folder: datasets go to OUT/FAMILY/QUALITY-v0, the training run to
    OUT/FAMILY/train-agent-ALGORITHM."""
    env: str = DEFAULT_ENV
    """Gymnasium environment id (a task of diffplan/tasks.json)."""
    quality: tuple[Quality, ...] = QUALITIES
    """Qualities to build (and what they need: medium-expert builds medium and expert)."""
    expert_agent: Path | None = None
    """The expert (SB3 zip or diffplan agent directory); None: the task's packaged agent."""
    steps: int = 200_000
    """Transitions of the expert and of the medium dataset (D4RL: 1,000,000)."""
    algorithm: Algorithm = "sac"
    """Algorithm of the train-agent run the medium agent is taken from: 'sac', D4RL's (its
    snapshots hop on Hopper), or 'ppo' (they stand still there, docs/RESULTS.md)."""
    training_steps: int = 1_000_000
    """Environment steps of that run."""
    checkpoint_every: int = 50_000
    """Snapshot interval of that run: the medium agent's candidates."""
    medium_fraction: float = 1 / 3
    """The medium agent's target return, as a fraction of the expert's measured return."""
    eval_episodes: int = 10
    """Deterministic episodes (seeds 10000+) that measure each candidate's return."""
    noise: NoiseKind = "policy"
    """Exploration of the expert and medium rollouts (as `diffplan collect --noise`): 'policy'
    samples each action from the agent's own distribution, as D4RL's collect_data.py did."""
    sigma: float = DEFAULT_SIGMA
    """Standard deviation of --noise gaussian."""
    seed: int = 0
    """Seed of the rollouts and of the training run."""
    num_envs: int = 8
    """Environments stepped side by side in the rollouts."""
    progress: bool = True
    """Show progress bars."""


def dataset_dir(config: MakeDatasetsConfig, quality: str) -> Path:
    """``OUT/FAMILY/QUALITY-v0``."""
    return config.out / task_for(config.env).family / f"{quality}-v0"


def standing_warning(quality: str, v_rate: float, task: Task) -> str | None:
    """A warning when an agent's data earns little more than the task's alive bonus per
    step (``v_rate``): its agent stands rather than moves (PPO's local optimum on Hopper;
    SAC's snapshots hop, 2.8 reward per step at 90,000 steps)."""
    if quality not in ("expert", "medium") or not 0 < v_rate <= 1.25 * task.alive_bonus:
        return None
    return (
        f"{quality}: {v_rate:.2f} reward per step, about {task.env_id}'s alive bonus "
        f"({task.alive_bonus}): its agent stands rather than moves. Train the medium agent "
        "with --algorithm sac (PPO learns to stand on Hopper), longer (--training-steps) or "
        "with another seed, and rebuild (delete the dataset)"
    )


def _write(config: MakeDatasetsConfig, quality: str, dataset: TrajectoryDataset, recipe: dict):
    """Write ``dataset`` with ``recipe`` (and the seconds it took) in its metadata; warn
    when its agent stands still."""
    path, task = dataset_dir(config, quality), task_for(config.env)
    warning = standing_warning(quality, dataset.info.v_rate, task)
    if warning is not None:
        recipe = {**recipe, "warning": warning}
        print(f"warning   {warning}", file=sys.stderr)
    source = {**dataset.source, "recipe": {"quality": quality, **recipe}}
    dataset = TrajectoryDataset(list(dataset), env_id=config.env, source=source, name=str(path))
    write_minari_dir(dataset, path, dataset_id=f"diffplan/{task.family}/{quality}-v0")
    print(f"{quality:14s} {dataset.info.num_steps} steps, return {dataset.info.mean_return:.1f}, "
          f"{recipe['seconds']:.0f} s -> {path}")  # fmt: skip


def _record(config: MakeDatasetsConfig, quality: str, agent: Path, recipe: dict) -> None:
    began = time.perf_counter()
    dataset = collect_dataset(
        CollectConfig(out=dataset_dir(config, quality), agent=agent, env=config.env,
                      steps=config.steps, noise=config.noise, sigma=config.sigma,
                      seed=config.seed, num_envs=config.num_envs, progress=config.progress)
    )  # fmt: skip
    recipe = {**recipe, "agent": str(agent), "seconds": round(time.perf_counter() - began, 1)}
    _write(config, quality, dataset, recipe)


def _measured_return(agent: Path, config: MakeDatasetsConfig, cache: Path) -> float:
    """Mean deterministic return of ``agent``, cached in the JSON file ``cache``."""
    if not cache.is_file():
        results = evaluate_agent(agent, config.env, config.eval_episodes)
        write_json(cache, {"agent": str(agent), "returns": [r for r, _, _ in results],
                           "falls": sum(fell for _, _, fell in results)})  # fmt: skip
    return float(np.mean(json.loads(cache.read_text())["returns"]))


def _training_run(config: MakeDatasetsConfig) -> Path:
    """The ``train-agent --record`` run of the medium agent, trained (or resumed) here."""
    run = config.out / task_for(config.env).family / f"train-agent-{config.algorithm}"
    if not (run / "MODEL_CARD.md").is_file():
        train_agent(
            TrainAgentConfig(out=run, env=config.env, algorithm=config.algorithm,
                             steps=config.training_steps,
                             seed=config.seed, checkpoint_every=config.checkpoint_every,
                             eval_episodes=config.eval_episodes, record=True,
                             resume=(run / "checkpoint" / "state.json").is_file(),
                             progress=config.progress)
        )  # fmt: skip
    return run


def choose_medium(config: MakeDatasetsConfig, expert: Path) -> tuple[int, Path, dict]:
    """The snapshot ``(steps, dir, recipe)`` whose return is nearest the target."""
    root = config.out / task_for(config.env).family
    expert_return = _measured_return(expert, config, root / "expert-evaluation.json")
    target = config.medium_fraction * expert_return
    run = _training_run(config)
    found = snapshots(run)
    candidates = {
        steps: _measured_return(path / "agent", config, path / "evaluation.json")
        for steps, path in tqdm(found, desc="measure snapshots", disable=not config.progress)
    }
    steps = min(candidates, key=lambda s: abs(candidates[s] - target))
    recipe = {"training_run": str(run), "snapshot_steps": steps,
              "snapshot_return": candidates[steps], "expert_return": expert_return,
              "target_fraction": config.medium_fraction, "target_return": target,
              "candidates": {str(s): r for s, r in candidates.items()}}  # fmt: skip
    return steps, dict(found)[steps], recipe


def _combined(config: MakeDatasetsConfig, quality: str, episodes: list, recipe: dict) -> None:
    """Write ``episodes`` gathered from other datasets as ``quality``."""
    source = {"format": "diffplan", "env_id": config.env}
    _write(config, quality, TrajectoryDataset(episodes, env_id=config.env, source=source), recipe)


def make_datasets(config: MakeDatasetsConfig) -> list[Path]:
    """Run ``diffplan make-datasets`` (module docstring); returns the dataset directories."""
    if config.steps < 1 or config.eval_episodes < 1 or not 0 < config.medium_fraction < 1:
        raise ValueError(
            f"--steps {config.steps}, --eval-episodes {config.eval_episodes}, --medium-fraction "
            f"{config.medium_fraction}: give positive counts and a fraction in (0, 1)"
        )
    wanted = set(config.quality)
    if "medium-expert" in wanted:
        wanted |= {"medium", "expert"}
    todo = {q for q in wanted if not is_minari_dir(dataset_dir(config, q))}
    expert = require_agent(config.expert_agent, config.env)
    if "expert" in todo:
        _record(config, "expert", expert, {"how": "the expert agent's rollouts"})
    if todo & {"medium", "medium-replay"}:
        steps, snapshot, recipe = choose_medium(config, expert)
        if "medium" in todo:
            _record(config, "medium", snapshot / "agent", recipe)
        if "medium-replay" in todo:
            began = time.perf_counter()
            episodes = replay_upto(Path(recipe["training_run"]), steps)
            recipe = {**recipe, "how": f"every episode of the training run up to step {steps}",
                      "seconds": round(time.perf_counter() - began, 1)}  # fmt: skip
            _combined(config, "medium-replay", episodes, recipe)
    if "medium-expert" in todo:
        began = time.perf_counter()
        parts = ("medium", "expert")
        episodes = [e for q in parts for e in read_minari_dir(dataset_dir(config, q))]
        recipe = {"how": "the medium episodes, then the expert episodes",
                  "parts": [f"diffplan/{task_for(config.env).family}/{q}-v0" for q in parts],
                  "seconds": round(time.perf_counter() - began, 1)}  # fmt: skip
        _combined(config, "medium-expert", episodes, recipe)
    return [dataset_dir(config, q) for q in QUALITIES if q in wanted]
