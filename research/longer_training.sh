#!/usr/bin/env bash
# Training longer with the checkpoint chosen on validation episodes (docs/RESULTS.md, "Across
# data and seeds"): for a source SRC and training seeds of a research/recipe_grid.sh folder RUNS,
# resume the diffusion model to 60,000 steps (checkpoints every 10,000), choose among
# 20k-60k with `select-checkpoint` on validation seeds 100-149 at k = 1 (tracked), and
# evaluate the choice on held-out seeds 1000-1049 at k = 1, 4, 7. Resumable: rerun.
#
#   research/longer_training.sh RUNS OUT SRC SEED...      # e.g. runs/recipe runs/longer tqc 0 2
#
# About 30 min of one core per seed.
set -euo pipefail
RUNS=$1; OUT=$2; SRC=$3; shift 3
export OMP_NUM_THREADS=1
for seed in "$@"; do
  grid=$RUNS/$SRC-s$seed; run=$OUT/$SRC-s$seed
  mkdir -p "$run"
  if [ ! -d "$run/diffusion" ]; then cp -r "$grid/diffusion" "$run/diffusion"; fi
  if [ ! -f "$run/diffusion.done" ]; then
    diffplan train --dataset "$RUNS/data-$SRC" --out "$run/diffusion" --threads 1 --seed "$seed" --optim.steps 60000 --optim.save-every 10000 --optim.keep-checkpoints 10 --no-progress --resume
    touch "$run/diffusion.done"
  fi
  if [ ! -f "$run/select.done" ]; then
    diffplan select-checkpoint --run "$run/diffusion" --out "$run/select" --inverse-dynamics "$grid/inverse" --planner tracked --steps 20000 30000 40000 50000 60000 --window 1 --episodes 50 --seed 100 --threads 1 --no-progress
    touch "$run/select.done"
  fi
  chosen=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['chosen'])" "$run/select/selection.json")
  [ -f "$run/eval-heldout/results.json" ] || diffplan evaluate --diffusion "$chosen" --inverse-dynamics "$grid/inverse" --planner tracked --windows 1 4 7 --episodes 50 --seed 1000 --threads 1 --no-progress --out "$run/eval-heldout" --overwrite
done
