"""``results.json``: an evaluation's results as data (schema: docs/RESULTS_SCHEMA.md).

One document per evaluation folder (``diffplan evaluate``) or main job (``diffplan run``):
a record per setting (preset, k, guidance, episode seeds and returns, mean, std, 95 % CI,
falls, % of data, D4RL score, V-rate, value rate, wall time), the dataset's statistics,
package versions, the git revision, the checkpoint step and the resolved config.
``diffplan report`` renders one or more documents as a markdown table.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import tyro

from diffplan.atomic import atomic_path, write_json
from diffplan.data.episodes import DatasetInfo
from diffplan.evaluation.d4rl_table import d4rl_table, find_results
from diffplan.evaluation.metrics import EpisodeResult, SettingMetrics
from diffplan.runtime import git_revision

SCHEMA = "diffplan.results/1"
"""The ``schema`` field of every document this module writes; bumped on a breaking change."""

PACKAGES = ("diffplan", "torch", "gymnasium", "mujoco", "numpy")

BASELINES = ("bc", "iql", "td3bc")  # presets of `diffplan baseline` rows, not planners
SEED_REPORT_PERCENT = {1: 90.3, 2: 74.1, 3: 76.2, 4: 82.7, 5: 86.9, 6: 64.6, 7: 75.7}
"""The seed replication report's % of the data's return on Walker2d (H = 8), per k."""
SEED_REPORT_GUIDED = (7, 84.1)
"""The seed report's value-guided run: (k, % of data)."""


@dataclass(frozen=True)
class SettingResult:
    """One evaluated setting: its label, effective window, guidance, episodes and metrics."""

    label: str
    effective_window: int
    guided: bool
    episodes: list[EpisodeResult]
    metrics: SettingMetrics
    seconds: float
    preset: str = "custom"
    """The planner preset evaluated ("custom": options given one by one)."""
    temporal_ensemble: int = 1
    """Plans whose predictions each step's target averages (1: the newest plan's)."""
    training_steps: int | None = None
    """A baseline's optimiser steps (None: a planner, whose models' steps are in the config)."""


def versions() -> dict[str, str | None]:
    """Installed versions of diffplan, its main dependencies and Python (None: missing)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def setting_record(result: SettingResult) -> dict[str, Any]:
    """One ``settings`` entry of ``results.json`` (docs/RESULTS_SCHEMA.md)."""
    m = result.metrics
    return {
        "label": result.label,
        "preset": result.preset,
        "k": result.effective_window,
        "guided": result.guided,
        "temporal_ensemble": result.temporal_ensemble,
        "training_steps": result.training_steps,
        "seeds": [e.seed for e in result.episodes],
        "episodes": m.episodes,
        "mean_return": m.mean_return,
        "std_return": m.std_return,
        "ci95": None if m.ci_low is None else [m.ci_low, m.ci_high],
        "falls": m.falls,
        "percent_of_data": m.percent_of_data,
        "d4rl_score": m.d4rl_score,
        "v_rate": m.v_rate,
        "value_rate": m.value_rate,
        "mean_length": m.mean_length,
        "seconds": result.seconds,
        "returns": [e.total_return for e in result.episodes],
        "lengths": [e.length for e in result.episodes],
        "fell": [e.fell for e in result.episodes],
    }


def results_document(
    results: Sequence[SettingResult],
    data: DatasetInfo,
    *,
    config: dict[str, Any] | None = None,
    checkpoint_step: int | None = None,
) -> dict[str, Any]:
    """The whole ``results.json`` of ``results`` on ``data``'s environment."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "env_id": data.env_id,
        "dataset": data.to_dict(),
        "settings": [setting_record(r) for r in results],
        "checkpoint_step": checkpoint_step,
        "versions": versions(),
        "git_revision": git_revision(),
        "config": config,
    }


def write_results(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically."""
    write_json(path, document)


def read_results(path: Path) -> dict[str, Any]:
    """A ``results.json`` (or the one in folder ``path``), checked for its schema."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such results file; `diffplan evaluate` and `diffplan run` write one"
        )
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); pass a results.json") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ValueError(
            f"{path}: not a diffplan results file (schema {found!r}, expected {SCHEMA!r}); "
            "pass the results.json of `diffplan evaluate` or `diffplan run`"
        )
    settings = document.get("settings")
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        raise ValueError(f"{path}: 'settings' must be a list of objects")
    return document


def seed_report_percent(env_id: str | None, k: int, guided: bool) -> float | None:
    """The seed report's % of data for Walker2d at window ``k`` (None elsewhere)."""
    if env_id is None or not env_id.startswith("Walker2d"):
        return None
    if guided:
        return SEED_REPORT_GUIDED[1] if k == SEED_REPORT_GUIDED[0] else None
    return SEED_REPORT_PERCENT.get(k)


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def results_table(documents: Sequence[dict[str, Any]], sources: Sequence[str] = ()) -> str:
    """Markdown table of every setting of ``documents`` (one row each).

    ``sources`` names each document in a first column (left out when empty). The CI of
    % of data is the return's CI over the dataset's mean return.
    """
    if sources and len(sources) != len(documents):
        raise ValueError("give one source name per results document")
    head = "| preset | k | guided | episodes | mean return [95 % CI] | falls | % of data [95 % CI] "
    head += "| seed report % | D4RL score | V-rate | value rate |"
    rule = "|---" * 11 + "|"
    if sources:
        head, rule = "| run " + head, "|---" + rule
    lines = [head, rule]
    for i, document in enumerate(documents):
        scale = 100.0 / document["dataset"]["mean_return"]
        for s in document["settings"]:
            ci = s.get("ci95")
            ret = f"{s['mean_return']:.1f}"
            pct = f"{s['percent_of_data']:.1f}"
            if ci is not None:
                ret += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
                pct += f" [{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]"
            seed = (  # the seed report's planner only compares with planners, not baselines
                None
                if s["preset"] in BASELINES
                else seed_report_percent(document.get("env_id"), s["k"], s["guided"])
            )
            row = (
                f"| {s['preset']} | {s['k']} | {'yes' if s['guided'] else 'no'} "
                f"| {s['episodes']} | {ret} | {s['falls']} | {pct} | {_number(seed)} "
                f"| {_number(s['d4rl_score'])} | {s['v_rate']:.3f} | {s['value_rate']:.3f} |"
            )
            lines.append(f"| {sources[i]} " + row if sources else row)
    return "\n".join(lines) + "\n"


def compact_table(documents: Sequence[dict[str, Any]]) -> str:
    """Markdown: a row per setting ``(k, guided)``, a column per preset; each cell
    ``% of data [95 % CI] (falls/episodes)``; the seed report's % of data last."""
    cells: dict[tuple[int, bool], dict[str, str]] = {}
    presets: list[str] = []
    env_id = None
    for document in documents:
        env_id = env_id or document.get("env_id")
        scale = 100.0 / document["dataset"]["mean_return"]
        for s in document["settings"]:
            presets += [] if s["preset"] in presets else [s["preset"]]
            ci = s.get("ci95")
            cell = f"{s['percent_of_data']:.1f}"
            cell += f" [{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]" if ci is not None else ""
            cell += f" ({s['falls']}/{s['episodes']})"
            cells.setdefault((s["k"], s["guided"]), {})[s["preset"]] = cell
    lines = [
        "| k | " + " | ".join(presets) + " | seed report |",
        "|---|" + "---|" * (len(presets) + 1),
    ]
    for (k, guided), row in sorted(cells.items()):
        seed = _number(seed_report_percent(env_id, k, guided))
        values = " | ".join(row.get(name, "—") for name in presets)
        lines.append(f"| {k}{' guided' if guided else ''} | {values} | {seed} |")
    return "\n".join(lines) + "\n"


@dataclass
class ReportConfig:
    """Render results.json files (of `diffplan evaluate` or `diffplan run`) as one markdown
    table: mean return and % of data with 95 % CIs, falls, D4RL score, V-rate."""

    results: tyro.conf.Positional[tuple[Path, ...]]
    """results.json files, or folders holding one."""
    out: Path | None = None
    """Markdown file to write (None: print the table)."""
    by_k: bool = False
    """A compact table: a row per setting (k, guided), a column per preset, each cell
    % of data [95 % CI] (falls/episodes), the seed report's % last."""
    d4rl: bool = False
    """D4RL's layout: a row per task and dataset quality, a column per method (baselines,
    each planner's value-guided setting, published D4RL scores); folders are searched for
    results.json files (see diffplan.evaluation.d4rl_table)."""


def report_command(config: ReportConfig) -> str:
    """Run ``diffplan report``: returns the markdown it wrote or printed."""
    if not config.results:
        raise ValueError("give at least one results.json (or a folder holding one)")
    if config.by_k and config.d4rl:
        raise ValueError("--by-k and --d4rl are two layouts; give one of them")
    paths = find_results(config.results) if config.d4rl else list(config.results)
    documents = [read_results(path) for path in paths]
    sources = [str(path) for path in paths] if len(documents) > 1 else []
    revisions = sorted({str(d.get("git_revision"))[:7] for d in documents})
    if config.d4rl:
        table = d4rl_table(documents)
    else:
        table = compact_table(documents) if config.by_k else results_table(documents, sources)
    flags = " --d4rl" if config.d4rl else " --by-k" if config.by_k else ""
    text = (
        f"Generated by `diffplan report{flags} {' '.join(map(str, config.results))}` "
        f"from results at commit {', '.join(revisions)}.\n\n" + table
    )
    if config.out is None:
        print(text, end="")
    else:
        with atomic_path(config.out) as tmp:
            tmp.write_text(text)
        print(f"written   {config.out}")
    return text
