"""The default recipe across data sources and training seeds: one markdown table.

Reads the folders that ``research/recipe_grid.sh`` writes under RUNS (per source SRC and
training seed S: ``SRC-sS/eval-heldout`` from ``diffplan evaluate --planner tracked`` and
``bc-SRC/seed-S`` from ``diffplan baseline``) and prints, per source, BC and the planner at
each k: every seed's % of the data's return (falls / episodes), the mean over seeds with a
95 % bootstrap CI over seeds (``diffplan pool``'s statistics), and whether the row meets
the bar on every seed: >= 100 % of the data's return, >= BC's mean over seeds, <= 1 fall
per 50 episodes.

    python research/recipe_table.py RUNS ppo tqc sac
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diffplan.evaluation.pooled import pool, read_metrics


def source_rows(runs: Path, source: str, seeds: list[int]) -> list[str]:
    """Markdown rows of one source: BC, then the planner's settings."""
    first = runs / f"{source}-s{seeds[0]}" / "eval-heldout"
    results = json.loads((first / "results.json").read_text())
    data = results["dataset"]
    title = f"{source} ({data['num_episodes']} episodes, mean return {data['mean_return']:.1f})"
    bc = pool({f"s{s}": read_metrics(runs / f"bc-{source}" / f"seed-{s}") for s in seeds})
    planner = pool({f"s{s}": read_metrics(runs / f"{source}-s{s}" / "eval-heldout") for s in seeds})
    bc_mean = bc[0].mean_percent
    rows = []
    for i, setting in enumerate([*bc, *planner]):
        runs_of = zip(setting.percent_of_data, setting.falls, setting.episodes, strict=True)
        cells = " | ".join(f"{p:.1f} ({f}/{e})" for p, f, e in runs_of)
        ci = f"[{setting.ci_low:.1f}, {setting.ci_high:.1f}]" if setting.ci_low is not None else ""
        is_bc = i < len(bc)
        met = (
            "—"
            if is_bc
            else "yes"
            if all(
                p >= max(100.0, bc_mean) and f * 50 <= e
                for p, f, e in zip(
                    setting.percent_of_data, setting.falls, setting.episodes, strict=True
                )
            )
            else "no"
        )
        label = "BC" if is_bc else f"tracked {setting.label}"
        rows.append(
            f"| {title if i == 0 else ''} | {label} | {cells} | {setting.mean_percent:.1f} {ci} "
            f"| {setting.total_falls}/{sum(setting.episodes)} | {met} |"
        )
    return rows


def main(runs: Path, sources: list[str], seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    seed_cells = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"| source | method | {seed_cells} | mean over seeds [95 % CI] | falls | bar met |",
        "|---|---|" + "---|" * len(seeds) + "---|---|---|",
    ]
    for source in sources:
        lines += source_rows(runs, source, list(seeds))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(main(Path(sys.argv[1]), sys.argv[2:]))
