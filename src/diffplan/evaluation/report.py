"""Artifacts of an evaluation sweep: CSV, JSON, a markdown report and the report's figures."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

from diffplan.atomic import atomic_path, write_json
from diffplan.data.episodes import DatasetInfo
from diffplan.evaluation.metrics import EpisodeResult, SettingMetrics


@dataclass(frozen=True)
class SettingResult:
    """One evaluated setting: its label, effective window, guidance, episodes and metrics."""

    label: str
    effective_window: int
    guided: bool
    episodes: list[EpisodeResult]
    metrics: SettingMetrics
    seconds: float


def write_metrics(results: list[SettingResult], out: Path) -> None:
    """``metrics.csv`` (one row per setting), ``episodes.csv`` and ``metrics.json``."""
    fields = ["label", "effective_window", "guided", *results[0].metrics.to_dict(), "seconds"]
    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for r in results:
            writer.writerow(
                {
                    "label": r.label,
                    "effective_window": r.effective_window,
                    "guided": r.guided,
                    **r.metrics.to_dict(),
                    "seconds": round(r.seconds, 1),
                }
            )
    with atomic_path(out / "episodes.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["label", "seed", "return", "length", "fell"])
        for r in results:
            for e in r.episodes:
                writer.writerow([r.label, e.seed, e.total_return, e.length, e.fell])
    write_json(
        out / "metrics.json",
        [
            {
                "label": r.label,
                "effective_window": r.effective_window,
                "guided": r.guided,
                "metrics": r.metrics.to_dict(),
                "seconds": r.seconds,
                "episodes": [vars(e) for e in r.episodes],
            }
            for r in results
        ],
    )


def markdown_report(results: list[SettingResult], data: DatasetInfo, header: str) -> str:
    """The report's Figure 1 table, plus falls and the D4RL score."""
    lines = [
        header,
        "",
        f"Data: {data.num_episodes} episodes, {data.num_steps} steps, mean return "
        f"{data.mean_return:.1f}, V-rate {data.v_rate:.3f}.",
        "",
        "| setting | k | episodes | mean return ± std | V-rate | % of data | value rate "
        "| D4RL score | falls | mean length |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        d4rl = f"{m.d4rl_score:.1f}" if m.d4rl_score is not None else "—"
        lines.append(
            f"| {r.label} | {r.effective_window} | {m.episodes} | {m.mean_return:.1f} ± "
            f"{m.std_return:.1f} | {m.v_rate:.3f} | {m.percent_of_data:.1f} | {m.value_rate:.3f} "
            f"| {d4rl} | {m.falls} | {m.mean_length:.0f} |"
        )
    lines += [
        "",
        "![score vs effective window](scores.png)",
        "",
        "![per-episode returns](episodes.png)",
        "",
    ]
    return "\n".join(lines)


def plot_scores(results: list[SettingResult], path: Path) -> None:
    """The report's Figure 1: % of the data's return and value rate vs effective window."""
    plain = [r for r in results if not r.guided]
    guided = [r for r in results if r.guided]
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    for axis, key, label in (
        (left, "percent_of_data", "% of dataset mean return"),
        (right, "value_rate", "value rate (V-rate / data V-rate)"),
    ):
        axis.plot(
            [r.effective_window for r in plain],
            [getattr(r.metrics, key) for r in plain],
            "o-",
            label="unguided",
        )
        if guided:
            axis.plot(
                [r.effective_window for r in guided],
                [getattr(r.metrics, key) for r in guided],
                "s",
                color="C3",
                label="guided",
            )
        axis.set_xlabel("effective window k (actions per plan)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    left.axhline(100, color="gray", lw=0.8, ls="--")
    left.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_episodes(results: list[SettingResult], path: Path, data: DatasetInfo) -> None:
    """The report's Figure 2: each episode's return per setting; falls marked."""
    fig = Figure(figsize=(8, 4))
    axis = fig.subplots()
    for i, r in enumerate(results):
        for e in r.episodes:
            axis.plot(
                i,
                e.total_return,
                "x" if not e.fell else "v",
                color="C0" if not e.fell else "C3",
                ms=7,
            )
    axis.axhline(data.mean_return, color="gray", lw=0.8, ls="--", label="dataset mean")
    axis.set_xticks(range(len(results)), [r.label for r in results], rotation=30, ha="right")
    axis.set_ylabel("episode return")
    axis.set_title("per-episode returns (x: completed, red triangle: fell)")
    axis.legend(loc="best")
    axis.margins(x=0.15)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_report(results: list[SettingResult], data: DatasetInfo, out: Path, header: str) -> None:
    """Every artifact of a sweep into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(results, out)
    plot_scores(results, out / "scores.png")
    plot_episodes(results, out / "episodes.png", data)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown_report(results, data, header))
