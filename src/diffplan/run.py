"""``diffplan run``: the main job, from one config.

dataset (collected from an agent) -> diffusion model -> value network ->
inverse dynamics model -> evaluation sweeps -> report, each stage in its own folder
under ``--out``. One sweep per planner preset (``--planners``, default the tracked
preset and the seed report's, ``evaluation-NAME/``), every effective window plus a
guided row each; ``report.md`` and ``results.json`` in ``--out`` gather them.
A stage whose output already exists is reused (``--resume`` semantics of the
training commands), so an interrupted run continues where it stopped.

Everything that differs per task (horizon, termination penalty, the default agent)
comes from the task table (:mod:`diffplan.tasks`). Walker2d's default agent ships with
diffplan (``diffplan/assets/walker2d-ppo``, see its ``MODEL_CARD.md``), so the default
job runs offline on a fresh machine; other tasks take ``--agent``.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from diffplan.baselines.command import BaselineConfig, baseline
from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.store import checkpoints
from diffplan.collect import CollectConfig, collect
from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.minari_format import read_minari_dir
from diffplan.data.sources import load_dataset
from diffplan.diffusion.backends import Backend
from diffplan.envs import env_family
from diffplan.evaluation.evaluate import EvaluateConfig, evaluate
from diffplan.evaluation.report import SettingResult, write_run_report
from diffplan.outputs import output_folder
from diffplan.planning.presets import DEFAULT_PRESET, find_preset
from diffplan.runtime import DeviceChoice
from diffplan.tasks import DEFAULT_ENV, require_agent, task_for
from diffplan.training import (
    OptimConfig,
    TrainConfig,
    TrainDynamicsConfig,
    TrainValueConfig,
    train,
    train_dynamics,
    train_value,
)
from diffplan.training.config import UNetConfig, ValueNetConfig, WindowConfig


@dataclass
class RunConfig:
    """Run the whole pipeline: collect -> train -> train-value -> train-dynamics ->
    evaluate (one sweep per planner preset) -> report.md and results.json."""

    out: Path = Path("runs/main")
    """Run folder: data/, diffusion/, value/, inverse-dynamics/, evaluation-NAME/ per
    planner, report.md, results.json and figures."""
    quick: bool = False
    """A demo that finishes in a few minutes: tiny data and training budgets, 2 episodes
    at k = 1 and H-1. Its scores say nothing about the method."""
    agent: Path | None = None
    """Agent that collects the data (a diffplan agent directory or an SB3 zip); None: the
    task's packaged agent (Walker2d-v5's PPO expert; other tasks need --agent)."""
    env: str = DEFAULT_ENV
    """Gymnasium environment id (a task of diffplan/tasks.json, any version)."""
    dataset: str | None = None
    """Train on this dataset instead of collecting one: a directory written by `diffplan
    collect` or `make-datasets`, a D4RL .hdf5 file or a Minari dataset id (its own env id
    is used; --agent and --data-steps do not apply)."""
    data_steps: int = 200_000
    """Transitions to collect."""
    horizon: int | None = None
    """Planning horizon H; None: the task's (tasks.json: Walker2d and Hopper 8,
    HalfCheetah 4)."""
    dim_mults: tuple[int, ...] = (1, 2, 4)
    """U-Net (and value network) width multipliers; the report's (1, 2, 4, 8) has 4x the
    parameters and trains ~2x slower."""
    diffusion_steps: int = 20
    """T_d, denoising steps per plan."""
    train_steps: int = 20_000
    """Optimiser steps of the diffusion model."""
    value_steps: int = 10_000
    """Optimiser steps of the value network."""
    inverse_steps: int = 10_000
    """Optimiser steps of the inverse dynamics model (batch 256); 0 skips it (then only
    presets without it can run, e.g. --planners report)."""
    batch_size: int = 64
    """Windows per optimiser step (both networks)."""
    lr: float = 6e-4
    """Adam learning rate of the diffusion model: 3x Diffuser's 2e-4, which learns too
    slowly for this budget (docs/RESULTS.md). The value network keeps 2e-4."""
    episodes: int = 10
    """Evaluation episodes per setting."""
    planners: tuple[str, ...] = (DEFAULT_PRESET, "report")
    """Planner presets swept at every effective window plus a guided row each (`diffplan
    evaluate --list-planners`)."""
    bc: bool = True
    """Also train and evaluate the behaviour-cloning baseline on the same data and episode
    seeds (a row of the report; about a minute)."""
    backend: Backend = "auto"
    """How the denoiser runs (as evaluate's --planning.backend)."""
    seed: int = 0
    """Seed of every stage."""
    device: DeviceChoice = "auto"
    """'auto' uses a GPU when there is one."""
    threads: int | None = None
    """CPU threads of torch (None: torch's default). Use 1 on a busy machine."""
    progress: bool = True
    """Show every stage's progress bars (--no-progress for logs)."""

    def profile(self) -> RunConfig:
        """The settings actually run: ``--quick`` shrinks every budget."""
        if not self.quick:
            return self
        return replace(
            self,
            data_steps=min(self.data_steps, 20_000),
            dim_mults=(1, 2, 4),
            diffusion_steps=min(self.diffusion_steps, 10),
            batch_size=min(self.batch_size, 32),
            train_steps=min(self.train_steps, 600),
            value_steps=min(self.value_steps, 300),
            inverse_steps=min(self.inverse_steps, 300),
            episodes=min(self.episodes, 2),
        )


def run(config: RunConfig) -> None:
    """Run ``diffplan run`` (module docstring); a rerun continues in the same --out."""
    with output_folder(config.out, "run", existing="reuse"):
        _run(config)


def _run(config: RunConfig) -> None:
    dataset = given_dataset(config)
    if dataset is not None:
        config = replace(config, env=dataset.env_id)
    task = task_for(config.env)
    config = replace(
        config.profile(),
        agent=None if dataset is not None else require_agent(config.agent, config.env),
        horizon=task.horizon if config.horizon is None else config.horizon,
    )
    if config.quick:
        print("diffplan run --quick: a DEMO with tiny budgets; its scores mean nothing.")
    if config.agent is not None and not config.agent.exists():
        raise FileNotFoundError(
            f"--agent {config.agent}: no such agent; train one with "
            "`diffplan train-agent --out DIR` and pass --agent DIR"
        )
    began = time.perf_counter()
    data = config.out / "data" if config.dataset is None else config.dataset
    if dataset is None and not (data / "data" / "metadata.json").exists():
        collect(
            CollectConfig(
                agent=config.agent,
                out=data,
                env=config.env,
                steps=config.data_steps,
                seed=config.seed,
                progress=config.progress,
            )
        )
    timings = {"collect": time.perf_counter() - began}
    windows = WindowConfig(horizon=config.horizon)
    common = {
        "dataset": str(data),
        "seed": config.seed,
        "device": config.device,
        "threads": config.threads,
        "progress": config.progress,
        "windows": windows,
        "diffusion_steps": config.diffusion_steps,
    }
    diffusion, value = config.out / "diffusion", config.out / "value"
    save_every = max(config.train_steps // 4, 1)
    train(
        TrainConfig(
            out=diffusion,
            resume=bool(checkpoints(diffusion)),
            model=UNetConfig(dim_mults=config.dim_mults),
            **common,
            optim=OptimConfig(
                steps=config.train_steps,
                batch_size=config.batch_size,
                lr=config.lr,
                save_every=save_every,
                ema_start=min(2000, config.train_steps // 4),
            ),
        )
    )
    train_value(
        TrainValueConfig(
            out=value,
            resume=bool(checkpoints(value)),
            model=ValueNetConfig(dim_mults=config.dim_mults),
            termination_penalty=task.termination_penalty,
            **common,
            optim=OptimConfig(
                steps=config.value_steps,
                batch_size=config.batch_size,
                save_every=max(config.value_steps // 4, 1),
            ),
        )
    )
    inverse = config.out / "inverse-dynamics"
    if config.inverse_steps > 0:
        train_dynamics(
            TrainDynamicsConfig(
                dataset=str(data),
                kind="inverse",
                out=inverse,
                resume=bool(checkpoints(inverse)),
                seed=config.seed,
                device=config.device,
                threads=config.threads,
                progress=config.progress,
                optim=OptimConfig(
                    steps=config.inverse_steps,
                    batch_size=256,
                    lr=1e-3,
                    save_every=max(config.inverse_steps // 4, 1),
                    ema_start=min(1000, config.inverse_steps // 4),
                ),
            )
        )
    timings["train"] = time.perf_counter() - began - timings["collect"]
    inputs = RunModels(diffusion, value, inverse if config.inverse_steps > 0 else None)
    sections = evaluate_presets(config, inputs)
    if config.bc:
        sections["bc"] = list(behaviour_cloning(config, data).values())
    timings["evaluate"] = time.perf_counter() - began - sum(timings.values())
    report = write_run_report(
        config.out,
        sections,
        (dataset or read_minari_dir(data)).info,
        timings=timings,
        commands=[
            shlex.join(
                ["diffplan", "run", *["--quick"] * config.quick]
                + ["--dataset", str(config.dataset)] * (config.dataset is not None)
                + ["--out", str(config.out)]
            )
        ],
        config=ckpt.jsonable(asdict(config)),
    )
    print(
        f"diffplan run finished in {(time.perf_counter() - began) / 60:.1f} min; report: {report}"
    )


def given_dataset(config: RunConfig) -> TrajectoryDataset | None:
    """The ``--dataset`` to train on (None: collect one); refuses options it conflicts with."""
    if config.dataset is None:
        return None
    if config.agent is not None:
        raise ValueError(
            "--dataset and --agent both say where the data comes from; pass one of them"
        )
    dataset = load_dataset(config.dataset)
    if dataset.env_id is None:
        raise ValueError(
            f"--dataset {config.dataset}: the data names no environment to plan in; use a "
            "dataset written by `diffplan collect` or a Minari dataset"
        )
    if config.env != DEFAULT_ENV and env_family(config.env) != env_family(dataset.env_id):
        raise ValueError(
            f"--env {config.env} conflicts with --dataset {config.dataset}, collected in "
            f"{dataset.env_id}; leave --env out (the dataset's environment is used)"
        )
    return dataset


def behaviour_cloning(config: RunConfig, data: Path) -> dict[int, SettingResult]:
    """The behaviour-cloning baseline on the run's data and episode seeds (``--out/bc``)."""
    return baseline(
        BaselineConfig(
            dataset=str(data),
            algo="bc",
            out=config.out / "bc",
            seeds=(config.seed,),
            steps=600 if config.quick else None,  # default: 20,000
            episodes=config.episodes,
            seed=config.seed,
            device=config.device,
            threads=config.threads,
            progress=config.progress,
        )
    )


@dataclass(frozen=True)
class RunModels:
    """The trained models of a run folder that the sweeps plan with."""

    diffusion: Path
    value: Path
    inverse_dynamics: Path | None


def evaluate_presets(config: RunConfig, models: RunModels) -> dict[str, list[SettingResult]]:
    """Each of ``config.planners`` swept over every effective window plus a guided row (in
    ``--out/evaluation-NAME/``); returns the settings' results per preset name."""
    sections = {}
    for name in config.planners:
        preset = find_preset(name)
        preset.check(models.inverse_dynamics)
        planning = replace(preset.config(), backend=config.backend)
        if config.quick:  # the demo's model has fewer denoising steps and candidates
            steps = min(planning.sampler.steps or config.diffusion_steps, config.diffusion_steps)
            planning = replace(
                planning,
                sampler=replace(planning.sampler, steps=steps),
                candidates=min(planning.selection_for(True, False)[1], 8),
            )
        sweep = EvaluateConfig(
            diffusion=models.diffusion,
            value=models.value,
            inverse_dynamics=models.inverse_dynamics if planning.track_states else None,
            out=config.out / f"evaluation-{name}",
            windows=(1, config.horizon - 1) if config.quick else (),
            episodes=config.episodes,
            seed=config.seed,
            planning=planning,
            device=config.device,
            threads=config.threads,
            progress=config.progress,
            preset=name,
            overwrite=True,  # a rerun evaluates again
        )
        sections[name] = evaluate(sweep)
    return sections
