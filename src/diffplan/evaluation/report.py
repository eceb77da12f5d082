"""Artifacts of an evaluation: results.json, CSV, JSON, a markdown report and its figures.

``write_report`` writes one sweep's folder (``diffplan evaluate``); ``write_run_report``
writes the main job's page (``diffplan run``): several presets in one table and one pair
of figures. Figures carry 95 % CIs, a title naming model, data and episodes, integer
ticks for k, and are saved as PNG and PDF.
"""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: no global state, no display backend
from matplotlib.ticker import MaxNLocator

from diffplan.atomic import atomic_path, write_json
from diffplan.data.episodes import DatasetInfo
from diffplan.evaluation.metrics import SettingMetrics
from diffplan.evaluation.results import (
    SEED_REPORT_PERCENT,
    SettingResult,
    results_document,
    results_table,
    seed_report_percent,
    write_results,
)

__all__ = ["SettingResult", "write_report", "write_run_report"]


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


def data_summary(data: DatasetInfo) -> str:
    """One line: the dataset's size, mean return and V-rate."""
    return (
        f"Data: {data.env_id or 'unknown environment'}, {data.num_episodes} episodes, "
        f"{data.num_steps} steps, mean return {data.mean_return:.1f}, V-rate {data.v_rate:.3f}."
    )


def figure_title(model: str, data: DatasetInfo, results: Sequence[SettingResult]) -> str:
    """Names the model, the data and the evaluation episodes (figures' titles)."""
    episodes = {r.metrics.episodes for r in results}
    count = "/".join(str(n) for n in sorted(episodes))
    return (
        f"{model} on {data.env_id or 'unknown env'} data ({data.num_episodes} episodes, "
        f"{data.num_steps} steps); {count} evaluation episodes per setting"
    )


def _wrapped(title: str) -> str:
    """``title`` in lines short enough for a figure's width."""
    return "\n".join(textwrap.wrap(title, 100))


def markdown_report(results: list[SettingResult], data: DatasetInfo, header: str) -> str:
    """The report's Figure 1 table with 95 % CIs, falls and the D4RL score."""
    table = results_table([results_document(results, data)])
    return "\n".join(
        [
            header,
            "",
            data_summary(data),
            "",
            table,
            "![score vs effective window](scores.png)",
            "",
            "![per-episode returns](episodes.png)",
            "",
        ]
    )


def _save(fig: Figure, stem: Path) -> None:
    """``stem``.png and ``stem``.pdf, each written atomically."""
    for fmt in ("png", "pdf"):
        with atomic_path(stem.with_suffix(f".{fmt}")) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110)


def _groups(results: Sequence[SettingResult]) -> dict[str, list[SettingResult]]:
    """Settings grouped into lines: by preset (when several) and guidance."""
    several = len({r.preset for r in results}) > 1
    groups: dict[str, list[SettingResult]] = {}
    for r in results:
        name = (f"{r.preset} " if several else "") + ("guided" if r.guided else "unguided")
        groups.setdefault(name, []).append(r)
    return groups


def _ci_errors(metrics: SettingMetrics, scale: float = 1.0) -> tuple[float, float]:
    """Distances from the mean return down and up to its CI ends, times ``scale`` (0: no CI)."""
    if metrics.ci_low is None or metrics.ci_high is None:
        return 0.0, 0.0
    mean = metrics.mean_return
    return (mean - metrics.ci_low) * scale, (metrics.ci_high - mean) * scale


def plot_scores(
    results: Sequence[SettingResult], stem: Path, data: DatasetInfo, title: str
) -> None:
    """The report's Figure 1: % of the data's return (95 % CI) and value rate vs k."""
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2)
    scale = 100.0 / data.mean_return
    for i, (name, group) in enumerate(_groups(results).items()):
        ks = [r.effective_window for r in group]
        style = {"color": f"C{i}", "label": name, "capsize": 3}
        style["fmt"] = "s" if all(r.guided for r in group) and len(group) == 1 else "o-"
        errors = [_ci_errors(r.metrics, scale) for r in group]
        yerr = [[low for low, _ in errors], [high for _, high in errors]]
        left.errorbar(ks, [r.metrics.percent_of_data for r in group], yerr=yerr, **style)
        right.plot(ks, [r.metrics.value_rate for r in group], style["fmt"], color=f"C{i}")
    if seed_report_percent(data.env_id, 1, guided=False) is not None:
        ks = sorted(SEED_REPORT_PERCENT)
        left.plot(ks, [SEED_REPORT_PERCENT[k] for k in ks], "x:", color="gray", label="seed report")
    for axis, label in (
        (left, "% of dataset mean return (95 % CI)"),
        (right, "value rate (V-rate / data V-rate)"),
    ):
        axis.set_xlabel("effective window k (actions per plan)")
        axis.set_ylabel(label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    left.axhline(100, color="gray", lw=0.8, ls="--")
    left.legend(fontsize=8)
    fig.suptitle(_wrapped(title), fontsize=9)
    fig.tight_layout()
    _save(fig, stem)


def plot_episodes(
    results: Sequence[SettingResult], stem: Path, data: DatasetInfo, title: str
) -> None:
    """The report's Figure 2: each episode's return per setting, falls marked, mean and CI."""
    fig = Figure(figsize=(max(8, 0.5 * len(results)), 4.4))
    axis = fig.subplots()
    several = len({r.preset for r in results}) > 1
    for i, r in enumerate(results):
        for e in r.episodes:
            axis.plot(i, e.total_return, "v" if e.fell else "x", color="C3" if e.fell else "C0")
        low, high = _ci_errors(r.metrics)
        if r.metrics.ci_low is not None:
            axis.errorbar(
                i + 0.25,
                r.metrics.mean_return,
                yerr=[[low], [high]],
                fmt="o",
                color="k",
                ms=4,
                capsize=3,
            )
    axis.axhline(data.mean_return, color="gray", lw=0.8, ls="--", label="dataset mean")
    labels = [f"{r.preset} {r.label}" if several else r.label for r in results]
    axis.set_xticks(range(len(results)), labels, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("episode return")
    axis.set_title(
        f"{_wrapped(title)}\nx: completed, red triangle: fell, black: mean with 95 % CI",
        fontsize=9,
    )
    axis.legend(loc="best")
    axis.margins(x=0.05)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, stem)


def _figures(results: Sequence[SettingResult], data: DatasetInfo, out: Path, model: str) -> None:
    title = figure_title(model, data, results)
    plot_scores(results, out / "scores", data, title)
    plot_episodes(results, out / "episodes", data, title)


def write_report(
    results: list[SettingResult],
    data: DatasetInfo,
    out: Path,
    header: str,
    *,
    model: str = "diffusion planner",
    config: dict[str, Any] | None = None,
    checkpoint_step: int | None = None,
) -> None:
    """Every artifact of a sweep into ``out``: results.json (with ``config`` and the
    checkpoint step), metrics files, figures (``model`` names the model in their titles)
    and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    write_results(
        out / "results.json",
        results_document(results, data, config=config, checkpoint_step=checkpoint_step),
    )
    write_metrics(results, out)
    _figures(results, data, out, model)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown_report(results, data, header))


def write_run_report(
    out: Path,
    sections: Mapping[str, Sequence[SettingResult]],
    data: DatasetInfo,
    *,
    timings: Mapping[str, float],
    commands: Sequence[str],
    config: dict[str, Any] | None = None,
    checkpoint_step: int | None = None,
    model: str = "diffusion planner",
) -> Path:
    """The main job's page ``out/report.md`` with ``out/results.json`` and figures.

    ``sections`` maps each preset name to its settings (its results' ``preset`` is set
    to the name); ``timings`` maps each stage to its wall time in seconds; ``commands``
    are the shell commands that reproduce the run. Returns the report's path.
    """
    results = [replace(r, preset=name) for name, group in sections.items() for r in group]
    if not results:
        raise ValueError("no evaluated settings to report")
    out.mkdir(parents=True, exist_ok=True)
    document = results_document(results, data, config=config, checkpoint_step=checkpoint_step)
    write_results(out / "results.json", document)
    _figures(results, data, out, model)
    total = sum(timings.values())
    lines = [
        f"# diffplan run: {model} on {data.env_id}",
        "",
        data_summary(data),
        "",
        "## Results",
        "",
        f"{figure_title(model, data, results)}. Mean return and % of the data's return with "
        "95 % bootstrap CIs over episodes; seed report: the replication report's % of data.",
        "",
        results_table([document]),
        "![score vs effective window](scores.png)",
        "",
        "![per-episode returns](episodes.png)",
        "",
        "## Commands",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "## Timings",
        "",
        "| stage | minutes |",
        "|---|---|",
        *(f"| {stage} | {seconds / 60:.1f} |" for stage, seconds in timings.items()),
        f"| total | {total / 60:.1f} |",
        "",
    ]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
