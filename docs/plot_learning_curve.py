"""Plot a run's metrics.csv (loss vs optimiser steps) to a PNG.

python docs/plot_learning_curve.py RUN_DIR OUT.png [--title TEXT]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="run directory holding metrics.csv")
    parser.add_argument("png", type=Path, help="output image")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    with (args.run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    losses = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, losses, lw=1.2)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (mean per log interval)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(args.title or str(args.run))
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"wrote {args.png} ({len(rows)} points, last loss {losses[-1]:.4f} at step {steps[-1]})")


if __name__ == "__main__":
    main()
