"""``diffplan report --d4rl``: every task and dataset quality in one table, D4RL's layout.

A row per (task, dataset quality); a column per method: the data itself, the baselines
(``bc``, ``iql``, ``td3bc``), each planner preset at its value-guided setting (the setting
Diffuser reports on D4RL), then Diffuser's and behaviour cloning's published D4RL scores
(Janner et al. 2022, Table 1: measured on D4RL's -v2 datasets, not on these). A cell
pools every episode of every results document of its task, quality and method (training
seeds together): mean D4RL-normalised score, its 95 % bootstrap CI over those episodes,
and falls / episodes; a list under the table gives each method's training budgets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffplan.evaluation.metrics import bootstrap_ci
from diffplan.tasks import QUALITIES, find_task, task_for

BASELINE_COLUMNS = ("bc", "iql", "td3bc")
PUBLISHED_COLUMNS = ("diffuser", "bc")
_MINARI_QUALITY = re.compile(r"[^/]+/[^/]+/([a-z-]+)-v\d+")


def _named_quality(source: Mapping[str, Any]) -> str | None:
    """The quality a Minari id names (``mujoco/hopper/medium-v0`` -> ``medium``), or None."""
    named = _MINARI_QUALITY.fullmatch(str(source.get("dataset_id", "")))
    return named.group(1) if named and named.group(1) in QUALITIES else None


def dataset_quality(dataset: Mapping[str, Any]) -> str:
    """The quality of a results document's ``dataset`` record: its recipe's (``diffplan
    make-datasets``), the one its Minari id names (``mujoco/hopper/medium-v0``),
    ``expert`` when an agent of the task table collected it, else ``other``."""
    source = dataset.get("source") or {}
    recipe = source.get("recipe") or {}
    if recipe.get("quality") in QUALITIES:
        return recipe["quality"]
    named = _named_quality(source)
    if named is not None:
        return named
    task = find_task(dataset.get("env_id"))
    agent = source.get("agent_file")
    if task is not None and agent:
        known = {a.name for a in task.agents}
        if Path(agent).name in known or Path(agent).parent.name in known:
            return "expert"
    return "other"


def dataset_label(dataset: Mapping[str, Any]) -> str:
    """A short name of a results document's data: its id when that names a quality
    (``diffplan/hopper/medium-v0``), else the collecting agent (its folder, or the folder
    of its zip), else its id."""
    source = dataset.get("source") or {}
    if _named_quality(source) is not None:
        return str(source["dataset_id"])
    agent = source.get("agent_file")
    if agent:
        path = Path(agent)
        return path.parent.name if path.suffix == ".zip" else path.name
    return str(source.get("dataset_id") or source.get("path") or "dataset")


def find_results(paths: Sequence[Path]) -> list[Path]:
    """The results.json files that ``paths`` name: a file itself, a folder's own
    results.json, or else every results.json below the folder (a baseline's seed
    folders, a sweep's jobs), each taken once."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / "results.json").is_file():
            below = sorted(path.rglob("results.json"))
            tops = [p for p in below if not any(q.parent in p.parents for q in below if q != p)]
            if not tops:
                raise FileNotFoundError(f"{path}: no results.json in or below this folder")
            found += tops
        else:
            found.append(path / "results.json" if path.is_dir() else path)
    return list(dict.fromkeys(found))


def method_settings(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{method: setting}`` of one document: each baseline's setting, and each planner
    preset's value-guided setting with the largest k (presets without one are left out)."""
    chosen: dict[str, dict[str, Any]] = {}
    for setting in document["settings"]:
        preset = setting["preset"]
        widest_guided = setting["guided"] and setting["k"] >= chosen.get(preset, {"k": -1})["k"]
        if preset in BASELINE_COLUMNS or widest_guided:
            chosen[preset] = setting
    return chosen


def _budget(document: Mapping[str, Any], setting: Mapping[str, Any]) -> str:
    """The training budget behind one setting of a document, from the setting or the
    document's config."""
    config = document.get("config") or {}
    if setting["preset"] in BASELINE_COLUMNS:
        steps = setting.get("training_steps") or config.get("steps")
        return f"{steps} steps" if steps else "not recorded"
    if "train_steps" in config:  # diffplan run
        return (
            f"diffusion {config['train_steps']}, value {config.get('value_steps')}, "
            f"inverse dynamics {config.get('inverse_steps')} steps"
        )
    step = document.get("checkpoint_step")
    return "not recorded" if step is None else f"diffusion checkpoint at step {step}"


@dataclass
class Cell:
    """The pooled episodes of one (task, quality, method)."""

    scores: list[float] = field(default_factory=list)
    falls: int = 0
    budgets: set[str] = field(default_factory=set)

    def render(self) -> str:
        """``score [CI] (falls/episodes)``."""
        mean = sum(self.scores) / len(self.scores)
        text = f"{mean:.1f}"
        if len(self.scores) > 1:
            low, high = bootstrap_ci(self.scores)
            text += f" [{low:.1f}, {high:.1f}]"
        return text + f" ({self.falls}/{len(self.scores)})"


def d4rl_table(documents: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: the task x quality table (module docstring) and each method's budgets."""
    cells: dict[tuple, dict[str, Cell]] = {}
    planners: list[str] = []
    for document in documents:
        task = find_task(document.get("env_id"))
        if task is None:
            raise ValueError(f"results for {document.get('env_id')!r}: not a task of tasks.json")
        data = document["dataset"]
        row = (  # one row per dataset: documents of the same data share its statistics
            task.family,
            dataset_quality(data),
            dataset_label(data),
            round(task.normalized_score(data["mean_return"]), 1),
            data["num_episodes"],
        )
        for method, setting in method_settings(document).items():
            if method not in BASELINE_COLUMNS and method not in planners:
                planners.append(method)
            cell = cells.setdefault(row, {}).setdefault(method, Cell())
            cell.scores += [task.normalized_score(r) for r in setting["returns"]]
            cell.falls += setting["falls"]
            cell.budgets.add(_budget(document, setting))
    methods = [*BASELINE_COLUMNS, *planners]
    head = ["task", "quality", "data", *methods, *(f"{m} (published)" for m in PUBLISHED_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    budgets: dict[str, set[str]] = {}
    order = {q: i for i, q in enumerate(QUALITIES)}
    for key in sorted(cells, key=lambda r: (r[0], order.get(r[1], len(order)), r[2:])):
        family, quality, label, score, _ = key
        row = cells[key]
        published = task_for(family).published_d4rl
        values = [
            family,
            quality,
            f"{label}: {score:.1f}",
            *(row[m].render() if m in row else "—" for m in methods),
            *(f"{published.get(m, {}).get(quality, '—')}" for m in PUBLISHED_COLUMNS),
        ]
        lines.append("| " + " | ".join(values) + " |")
        for m in methods:
            budgets.setdefault(m, set()).update(row[m].budgets if m in row else ())
    note = (
        "\nCells: D4RL-normalised score, mean over episodes [95 % bootstrap CI] (falls / "
        "episodes). Planners: each preset's value-guided setting. Published: Janner et al. "
        "2022, Table 1, on D4RL's -v2 datasets (other data). Training budgets, every "
        "budget a method's cells used:\n\n"
    )
    listed = [f"- {m}: {'; '.join(sorted(b))}" for m, b in budgets.items() if b]
    return "\n".join(lines) + "\n" + note + "\n".join(listed) + "\n"
