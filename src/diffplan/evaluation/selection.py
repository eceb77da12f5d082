"""``diffplan select-checkpoint``: choose a training run's checkpoint on validation episodes.

Checkpoints a few thousand steps apart plan very differently (at k = 1 one may fall in
3 of 100 episodes and the next in 23, docs/RESULTS.md), so the last checkpoint is not
the one to keep. This command evaluates every kept checkpoint of a ``diffplan train``
run with the same planner and episode seeds, keeps the one with the fewest falls (ties:
the highest mean return) and writes ``selection.csv``, ``selection.json`` (the chosen
checkpoint), ``selection.md`` and ``selection.png``, plus one ``diffplan evaluate``
folder per checkpoint (``step_<N>/``), reused when the command runs again with the same
options. The seeds used here are for choosing: report the chosen checkpoint on others.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from matplotlib.figure import Figure

from diffplan.atomic import atomic_path, write_json
from diffplan.checkpoints import store as ckpt
from diffplan.evaluation.evaluate import EvaluateConfig, config_record, evaluate
from diffplan.outputs import output_folder
from diffplan.planning.config import PlanningConfig
from diffplan.runtime import DeviceChoice

# Options that change how an evaluation runs but not its episodes.
_RUN_ONLY = ("threads", "progress", "device", "video", "overwrite")


@dataclass
class SelectCheckpointConfig:
    """Evaluate every kept checkpoint of a training run and keep the one that falls least."""

    run: Path
    """A `diffplan train` run directory (its checkpoints/step_* are evaluated)."""
    out: Path = Path("runs/select")
    """Folder for the selection table, figure and one evaluation folder per checkpoint."""
    steps: tuple[int, ...] = ()
    """Training steps of the checkpoints to compare; default every kept checkpoint."""
    window: int = 1
    """Effective window k the checkpoints are compared at."""
    episodes: int = 100
    """Validation episodes per checkpoint (falls are rare: tens of episodes rank little)."""
    seed: int = 0
    """First validation seed. Report the chosen checkpoint on seeds outside
    seed .. seed + episodes - 1."""
    value: Path | None = None
    """Value network: compare the value-guided planner (choice among --planning.candidates)."""
    dynamics: Path | None = None
    """Forward dynamics model for plan selection by consistency (as in evaluate)."""
    inverse_dynamics: Path | None = None
    """Inverse dynamics model: execute actions derived from the planned states."""
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    """The planner every checkpoint is evaluated with."""
    weights: Literal["ema", "model"] = "ema"
    """Which weights of each checkpoint to plan with."""
    device: DeviceChoice = "auto"
    """'auto' uses a GPU when there is one."""
    threads: int | None = None
    """CPU threads of torch (None: torch's default). Use 1 on a busy machine."""
    progress: bool = True
    """Show progress bars."""


@dataclass(frozen=True)
class CheckpointScore:
    """One checkpoint's validation result."""

    step: int
    checkpoint: Path
    episodes: int
    falls: int
    percent_of_data: float
    """Mean return as % of the dataset's mean return."""
    standard_error: float
    """Standard error of ``percent_of_data`` over the episodes."""


def select_checkpoint(config: SelectCheckpointConfig) -> CheckpointScore:
    """Run ``diffplan select-checkpoint`` (module docstring); returns the chosen checkpoint."""
    with output_folder(config.out, "select-checkpoint", existing="reuse"):
        return _select_checkpoint(config)


def _select_checkpoint(config: SelectCheckpointConfig) -> CheckpointScore:
    candidates = _checkpoints(config.run, config.steps)
    scores = []
    for number, (step, checkpoint) in enumerate(candidates, 1):
        evaluation = _evaluate_config(config, checkpoint, config.out / checkpoint.name)
        reused = _finished(evaluation)
        print(
            f"checkpoint {number}/{len(candidates)}: step {step}"
            + (" (reusing its earlier evaluation)" if reused else "")
        )
        if not reused:
            evaluate(evaluation)
        scores.append(_score(step, checkpoint, evaluation.out))
    chosen = min(scores, key=lambda s: (s.falls, -s.percent_of_data, -s.step))
    _write(scores, chosen, config)
    print(
        f"chosen    step {chosen.step}: {chosen.falls} falls of {chosen.episodes}, "
        f"{chosen.percent_of_data:.1f} ± {chosen.standard_error:.1f} % of data "
        f"(seeds {config.seed}-{config.seed + config.episodes - 1}: report it on others)\n"
        f"written   {config.out}/selection.md"
    )
    return chosen


def _checkpoints(run: Path, steps: tuple[int, ...]) -> list[tuple[int, Path]]:
    """``(training step, checkpoint)`` of the run's checkpoints at ``steps`` (all if empty)."""
    found = ckpt.checkpoints(run)
    if not found:
        raise FileNotFoundError(
            f"{run} has no checkpoints/step_* directories; pass a `diffplan train` run directory"
        )
    by_step = {ckpt.read_header(p)["step"]: p for p in found}
    missing = sorted(set(steps) - set(by_step))
    if missing:
        raise ValueError(
            f"{run} keeps no checkpoint at step(s) {missing}; it keeps {sorted(by_step)}"
        )
    return [(s, by_step[s]) for s in sorted(set(steps) if steps else by_step)]


def _evaluate_config(config: SelectCheckpointConfig, checkpoint: Path, out: Path) -> EvaluateConfig:
    guided = config.value is not None
    return EvaluateConfig(
        diffusion=checkpoint,
        out=out,
        value=config.value,
        dynamics=config.dynamics,
        inverse_dynamics=config.inverse_dynamics,
        windows=() if guided else (config.window,),
        guided_windows=(config.window,) if guided else (),
        episodes=config.episodes,
        seed=config.seed,
        planning=config.planning,
        weights=config.weights,
        device=config.device,
        threads=config.threads,
        progress=config.progress,
        overwrite=True,  # an unfinished or outdated evaluation of this selection
    )


def _finished(evaluation: EvaluateConfig) -> bool:
    """Whether ``evaluation.out`` holds a complete run of the same options."""
    try:
        saved = json.loads((evaluation.out / "config.json").read_text())["config"]
        complete = (evaluation.out / "metrics.json").is_file()
    except (OSError, ValueError, KeyError):
        return False
    current = config_record(evaluation)
    return complete and all(
        saved.get(key) == value for key, value in current.items() if key not in _RUN_ONLY
    )


def _score(step: int, checkpoint: Path, out: Path) -> CheckpointScore:
    (setting,) = json.loads((out / "metrics.json").read_text())
    data_mean = json.loads((out / "config.json").read_text())["dataset"]["mean_return"]
    returns = [100.0 * e["total_return"] / data_mean for e in setting["episodes"]]
    metrics = setting["metrics"]
    n = len(returns)
    mean = sum(returns) / n
    variance = sum((r - mean) ** 2 for r in returns) / (n - 1) if n > 1 else 0.0
    return CheckpointScore(
        step=step,
        checkpoint=checkpoint,
        episodes=n,
        falls=metrics["falls"],
        percent_of_data=metrics["percent_of_data"],
        standard_error=math.sqrt(variance / n),
    )


def _write(
    scores: list[CheckpointScore], chosen: CheckpointScore, config: SelectCheckpointConfig
) -> None:
    out = config.out
    rows = [{**asdict(s), "checkpoint": str(s.checkpoint)} for s in scores]
    with atomic_path(out / "selection.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json(
        out / "selection.json",
        {
            "chosen": str(chosen.checkpoint),
            "rule": "fewest falls, then highest mean return, then the later step",
            "window": config.window,
            "guided": config.value is not None,
            "seeds": [config.seed, config.seed + config.episodes - 1],
            "checkpoints": rows,
        },
    )
    last = config.seed + config.episodes - 1
    planner = "value-guided" if config.value else "unguided"
    lines = [
        f"# Checkpoint selection for {config.run}",
        "",
        f"k = {config.window}, {planner}, {config.episodes} validation episodes per checkpoint "
        f"(seeds {config.seed} to {last}); evaluation folders step_*/ hold each one's report.",
        "",
        "| step | falls | % of data ± SE |",
        "|---|---|---|",
    ]
    for s in scores:
        mark = " **(chosen)**" if s is chosen else ""
        lines.append(
            f"| {s.step}{mark} | {s.falls} of {s.episodes} | "
            f"{s.percent_of_data:.1f} ± {s.standard_error:.1f} |"
        )
    lines += ["", "![falls and score per checkpoint](selection.png)", ""]
    with atomic_path(out / "selection.md") as tmp:
        tmp.write_text("\n".join(lines))
    _plot(scores, chosen, out / "selection.png")


def _plot(scores: list[CheckpointScore], chosen: CheckpointScore, path: Path) -> None:
    """Falls and % of the data's return per training step; the chosen checkpoint marked."""
    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2)
    steps = [s.step for s in scores]
    left.plot(steps, [s.falls for s in scores], "o-")
    left.plot([chosen.step], [chosen.falls], "o", color="C3", ms=10, label="chosen")
    left.set_ylabel(f"falls of {chosen.episodes}")
    right.errorbar(
        steps,
        [s.percent_of_data for s in scores],
        yerr=[s.standard_error for s in scores],
        fmt="o-",
        capsize=3,
    )
    right.axhline(100, color="gray", lw=0.8, ls="--")
    right.set_ylabel("% of dataset mean return (± SE)")
    for axis in (left, right):
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    left.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
