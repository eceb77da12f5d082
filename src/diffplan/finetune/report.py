"""What a fine-tune run records: ``metrics.csv`` (one row per iteration) and ``returns.png``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

from diffplan.atomic import atomic_path

METRICS = (
    "iteration",
    "env_steps",
    "episodes",
    "mean_return",
    "falls",
    "policy_loss",
    "value_loss",
    "approx_kl",
    "clip_fraction",
    "minibatches",
    "regularizer_loss",
    "ood_penalty",
    "elapsed_s",
)


class MetricsLog:
    """Appends one row per iteration to ``<out>/metrics.csv`` (columns :data:`METRICS`; a
    value of None is left empty).

    Rows after ``start_iteration`` (left by a run that went on past its last checkpoint) are
    dropped, so that a resumed run's log has each iteration once.
    """

    def __init__(self, out: Path, start_iteration: int) -> None:
        self.path = out / "metrics.csv"
        kept = [r for r in read_metrics(self.path) if int(r["iteration"]) <= start_iteration]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRICS)
            writer.writeheader()
            writer.writerows(kept)
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=METRICS)

    def log(self, row: dict[str, float | int | None]) -> None:
        self.writer.writerow({k: _format(row[k]) for k in METRICS})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _format(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` (none if it does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plot_returns(
    rows: list[dict[str, str]], path: Path, *, title: str, dataset_mean: float | None
) -> None:
    """Mean return of the episodes finished in each iteration vs environment steps."""
    points = [(float(r["env_steps"]), float(r["mean_return"])) for r in rows if r["mean_return"]]
    fig = Figure(figsize=(7, 4))
    axis = fig.subplots()
    if points:
        steps, returns = zip(*points, strict=True)
        axis.plot(steps, returns, "o-", ms=3, label="fine-tuned planner")
    if dataset_mean is not None and math.isfinite(dataset_mean):
        axis.axhline(dataset_mean, color="gray", lw=0.8, ls="--", label="dataset mean")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("mean return of finished episodes")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
