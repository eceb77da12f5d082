#!/usr/bin/env bash
# Goal noise of the inverse model (docs/RESULTS.md, "Across data and seeds"): for a source SRC
# and training seed SEED of a research/recipe_grid.sh folder RUNS, an inverse model trained
# with `--goal-noise SIGMA`, and the tracked planner with it at k = 1, 4, 7 on validation
# seeds 100-149 (50 episodes). Resumable: rerun.
#
#   research/goal_noise.sh RUNS SRC SEED SIGMA        # e.g. runs/recipe tqc 0 0.1
#
# About 3 min of one core.
set -euo pipefail
RUNS=$1; SRC=$2; SEED=$3; SIGMA=$4
export OMP_NUM_THREADS=1
run=$RUNS/$SRC-s$SEED/goal-noise-$SIGMA
if [ ! -f "$run/inverse.done" ]; then
  diffplan train-dynamics --dataset "$RUNS/data-$SRC" --kind inverse --goal-noise "$SIGMA" --out "$run/inverse" --threads 1 --seed "$SEED" --no-progress $([ -d "$run/inverse" ] && echo --resume)
  touch "$run/inverse.done"
fi
[ -f "$run/eval-val/results.json" ] || diffplan evaluate --diffusion "$RUNS/$SRC-s$SEED/diffusion" --inverse-dynamics "$run/inverse" --planner tracked --windows 1 4 7 --episodes 50 --seed 100 --threads 1 --no-progress --out "$run/eval-val" --overwrite
