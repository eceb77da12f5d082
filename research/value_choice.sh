#!/usr/bin/env bash
# The value network's choice among 8 plans at every window (docs/RESULTS.md, "Across data
# and seeds"): for a source SRC and training seed SEED of a research/recipe_grid.sh folder
# RUNS, a value network (`diffplan train-value` defaults, the same seed) and the tracked
# preset's guided settings (choice of 8, no gradient steps) at k = 1, 4, 7 on episode seeds
# FIRST.. (50 episodes; 100 for validation, 1000 held out). Resumable: rerun.
#
#   research/value_choice.sh RUNS SRC SEED FIRST        # e.g. runs/recipe tqc 0 100
#
# About 10 min of one core.
set -euo pipefail
RUNS=$1; SRC=$2; SEED=$3; FIRST=$4
export OMP_NUM_THREADS=1
run=$RUNS/$SRC-s$SEED
if [ ! -f "$run/value.done" ]; then
  diffplan train-value --dataset "$RUNS/data-$SRC" --out "$run/value" --threads 1 --seed "$SEED" --no-progress $([ -d "$run/value" ] && echo --resume)
  touch "$run/value.done"
fi
out=$run/eval-value-choice-$FIRST
[ -f "$out/results.json" ] || diffplan evaluate --diffusion "$run/diffusion" --inverse-dynamics "$run/inverse" --value "$run/value" --planner tracked --guided-windows 1 4 7 --episodes 50 --seed "$FIRST" --threads 1 --no-progress --out "$out" --overwrite
