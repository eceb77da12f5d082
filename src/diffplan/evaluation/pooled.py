"""Training seeds as an axis: one setting's results over several trained models, pooled.

Each run (one trained model, e.g. ``OUT/seed-0``) is evaluated on the same episode
seeds. Per setting (label), the pooled row gives each run's % of data and falls,
the mean over runs of the % of data, and a 95 % bootstrap confidence interval of
that mean over runs (:func:`~diffplan.evaluation.metrics.bootstrap_ci`: runs are
resampled, not episodes, so the interval is about training seeds).

``diffplan pool RUN_DIR ...`` pools evaluation folders written by ``diffplan
evaluate`` or ``diffplan baseline`` (their ``metrics.json``) into ``pooled.md`` and
``pooled.json``. To train several seeds of a diffusion, value or dynamics model, run
the training command once per seed into its own folder, e.g.
``for s in 0 1 2; do diffplan train --seed $s --out runs/diffusion/seed-$s ...; done``,
evaluate each and pool the evaluation folders. When each run's checkpoint was chosen
by ``diffplan select-checkpoint``, ``--selections`` checks that its validation seeds
are disjoint from the reported episode seeds and the report names both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import tyro

from diffplan.atomic import atomic_path, write_json
from diffplan.evaluation.metrics import bootstrap_ci
from diffplan.outputs import output_folder

POOLED_MD, POOLED_JSON = "pooled.md", "pooled.json"


@dataclass(frozen=True)
class PooledSetting:
    """One setting over runs: per run % of data and falls; pooled mean and its 95 % CI."""

    label: str
    runs: list[str]
    episodes: list[int]
    percent_of_data: list[float]
    falls: list[int]
    mean_percent: float
    ci_low: float | None
    ci_high: float | None
    """The 95 % CI over runs (None for a single run)."""

    @property
    def total_falls(self) -> int:
        return sum(self.falls)


def pool(runs: Mapping[str, Sequence[Mapping]], *, seed: int = 0) -> list[PooledSetting]:
    """Pool ``{run name: metrics.json records}`` by label (labels in the first run's order).

    Every run must hold the same labels.
    """
    if not runs:
        raise ValueError("no runs to pool")
    names = list(runs)
    by_run = {name: {r["label"]: r["metrics"] for r in records} for name, records in runs.items()}
    labels = list(by_run[names[0]])
    pooled = []
    for label in labels:
        missing = [name for name in names if label not in by_run[name]]
        if missing:
            raise ValueError(
                f"setting {label!r} is missing from the runs {missing}; evaluate "
                "every run with the same settings before pooling"
            )
        metrics = [by_run[name][label] for name in names]
        percents = [float(m["percent_of_data"]) for m in metrics]
        low, high = bootstrap_ci(percents, seed=seed) if len(percents) > 1 else (None, None)
        pooled.append(
            PooledSetting(
                label=label,
                runs=names,
                episodes=[int(m["episodes"]) for m in metrics],
                percent_of_data=percents,
                falls=[int(m["falls"]) for m in metrics],
                mean_percent=sum(percents) / len(percents),
                ci_low=low,
                ci_high=high,
            )
        )
    return pooled


def pooled_markdown(pooled: Sequence[PooledSetting], header: str) -> str:
    """A table: one row per setting, each run's % of data (falls), pooled mean [95 % CI]."""
    names = pooled[0].runs
    lines = [
        header,
        "",
        "Per run: % of the data's mean return (falls / episodes). Pooled: mean over runs "
        "with a 95 % bootstrap CI over runs.",
        "",
        "| setting | " + " | ".join(names) + " | pooled % of data [95 % CI] | falls |",
        "|---|" + "---|" * len(names) + "---|---|",
    ]
    for p in pooled:
        cells = [
            f"{percent:.1f} ({falls}/{episodes})"
            for percent, falls, episodes in zip(p.percent_of_data, p.falls, p.episodes, strict=True)
        ]
        ci = "" if p.ci_low is None else f" [{p.ci_low:.1f}, {p.ci_high:.1f}]"
        lines.append(
            f"| {p.label} | " + " | ".join(cells) + f" | {p.mean_percent:.1f}{ci} "
            f"| {p.total_falls}/{sum(p.episodes)} |"
        )
    return "\n".join(lines) + "\n"


def write_pooled(pooled: Sequence[PooledSetting], out: Path, header: str) -> None:
    """``pooled.md`` and ``pooled.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / POOLED_JSON, [asdict(p) for p in pooled])
    with atomic_path(out / POOLED_MD) as tmp:
        tmp.write_text(pooled_markdown(pooled, header))


def read_metrics(folder: Path) -> list[dict]:
    """The ``metrics.json`` records of an evaluation folder."""
    path = folder / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: pool folders written by `diffplan evaluate` or `diffplan baseline`"
        )
    return json.loads(path.read_text())


def episode_seeds(folder: Path) -> tuple[int, int]:
    """First and last episode seed of a ``diffplan evaluate`` folder (its ``config.json``)."""
    path = folder / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {folder} a `diffplan evaluate` folder?")
    config = json.loads(path.read_text())["config"]
    return config["seed"], config["seed"] + config["episodes"] - 1


def selection_note(run: Path, selection: Path) -> str:
    """One line saying on which seeds ``run``'s checkpoint was chosen and reported.

    Raises ``ValueError`` when the validation seeds of ``selection`` (a
    ``select-checkpoint`` folder or its ``selection.json``) overlap ``run``'s episodes.
    """
    path = selection / "selection.json" if selection.is_dir() else selection
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass `diffplan select-checkpoint` folders")
    chosen = json.loads(path.read_text())
    first, last = chosen["seeds"]
    low, high = episode_seeds(run)
    if first <= high and low <= last:
        raise ValueError(
            f"{run} reports episode seeds {low}-{high}, which overlap the validation seeds "
            f"{first}-{last} its checkpoint was chosen on ({path}); evaluate the chosen "
            "checkpoint with --seed outside them"
        )
    return (
        f"{run}: checkpoint {chosen['chosen']} chosen on validation episode seeds "
        f"{first}-{last}, reported on episode seeds {low}-{high}."
    )


@dataclass
class PoolConfig:
    """Pool evaluation folders of several training seeds: per seed, mean and 95 % CI."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Evaluation folders (one per trained model), each with a metrics.json."""
    out: Path = Path("runs/pooled")
    """Folder for pooled.md and pooled.json."""
    selections: tuple[Path, ...] = ()
    """The select-checkpoint folder of each run, in the same order (when their checkpoints
    were chosen on validation episodes): checked disjoint from the reported episode seeds
    and named in the report."""


def pool_command(config: PoolConfig) -> list[PooledSetting]:
    """Run ``diffplan pool`` (module docstring)."""
    paths = [str(folder) for folder in config.runs]
    if len(set(paths)) != len(paths):
        raise ValueError(f"a folder is given twice among {paths}")
    short = [folder.name for folder in config.runs]  # column names: the folders' own names
    names = short if len(set(short)) == len(short) else paths
    if config.selections and len(config.selections) != len(config.runs):
        raise ValueError(
            f"--selections names {len(config.selections)} folders for {len(config.runs)} runs; "
            "give one per run, in the same order"
        )
    notes = [selection_note(r, s) for r, s in zip(config.runs, config.selections, strict=False)]
    pooled = pool({name: read_metrics(run) for name, run in zip(names, config.runs, strict=True)})
    with output_folder(config.out, "pool", existing="reuse"):
        write_pooled(pooled, config.out, "\n\n".join([f"# Pooled over {len(names)} runs", *notes]))
    print(f"written   {config.out}/{POOLED_MD}")
    return pooled
