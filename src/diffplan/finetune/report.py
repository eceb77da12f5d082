"""What a fine-tune run records: ``metrics.csv`` (one row per iteration, written by
:class:`~diffplan.training.trainer.MetricsLogger`, also to TensorBoard) and ``returns.png``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
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


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` (none if it does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plot_returns(
    rows: list[dict[str, str]],
    path: Path,
    *,
    title: str,
    dataset_mean: float | None,
    smoothing: int = 10,
) -> None:
    """Mean return of the episodes finished in each iteration vs environment steps, with
    its running mean over the last ``smoothing`` iterations (weighted by episodes), and the
    fraction of those episodes that fell below it."""
    done = [r for r in rows if r["mean_return"]]
    steps = [float(r["env_steps"]) for r in done]
    returns = [float(r["mean_return"]) for r in done]
    episodes = [int(r["episodes"]) for r in done]
    falls = [int(r["falls"]) / int(r["episodes"]) for r in done]
    fig = Figure(figsize=(7, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    if done:
        top.plot(steps, returns, "o", ms=3, alpha=0.5, label="each iteration")
        # Episode-weighted mean over iterations i - smoothing + 1 .. i, from cumulative sums.
        totals = np.concatenate([[0.0], np.cumsum(np.multiply(returns, episodes))])
        counts = np.concatenate([[0], np.cumsum(episodes)])
        last = np.arange(1, len(done) + 1)
        first = np.maximum(last - smoothing, 0)
        running = (totals[last] - totals[first]) / (counts[last] - counts[first])
        top.plot(steps, running, "-", lw=2, label=f"running mean ({smoothing} iterations)")
        bottom.plot(steps, falls, "o-", ms=3, color="tab:red")
    if dataset_mean is not None and math.isfinite(dataset_mean):
        top.axhline(dataset_mean, color="gray", lw=0.8, ls="--", label="dataset mean")
    top.set_ylabel("mean return of finished episodes")
    top.set_title(title)
    top.legend(loc="best")
    bottom.set_ylabel("fraction that fell")
    bottom.set_xlabel("environment steps")
    bottom.set_ylim(-0.05, 1.05)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
