#!/usr/bin/env bash
# One lever on validation seeds (docs/notes/README.md): a diffusion model trained on DATA with
# `diffplan train`'s defaults plus any extra flags, an inverse dynamics model with
# `train-dynamics`' defaults (the task's goal noise), and the tracked preset at k = 1, 4, 7 on
# validation episode seeds 100-149 (50 episodes; EPISODES=N for fewer). Resumable: rerun.
#
#   research/validation_run.sh DATA RUN SEED [diffplan train flags ...]
#   research/validation_run.sh data/hopper runs/hopper-h32 0 --windows.horizon 32
#
# About 20-30 min of one core (the diffusion model); the results in RUN/eval-val.
set -euo pipefail
DATA=$1; RUN=$2; SEED=$3; shift 3
export OMP_NUM_THREADS=1
resume() { [ -d "$1" ] && echo --resume || true; }  # continue a stopped training run
if [ ! -f "$RUN/diffusion.done" ]; then  # if-blocks: a failed step stops the script
  diffplan train --dataset "$DATA" --out "$RUN/diffusion" --threads 1 --seed "$SEED" --no-progress "$@" $(resume "$RUN/diffusion")
  touch "$RUN/diffusion.done"
fi
if [ ! -f "$RUN/inverse.done" ]; then
  diffplan train-dynamics --dataset "$DATA" --kind inverse --out "$RUN/inverse" --threads 1 --seed "$SEED" --no-progress $(resume "$RUN/inverse")
  touch "$RUN/inverse.done"
fi
[ -f "$RUN/eval-val/results.json" ] || diffplan evaluate --diffusion "$RUN/diffusion" --inverse-dynamics "$RUN/inverse" --planner tracked --windows 1 4 7 --episodes "${EPISODES:-50}" --seed 100 --threads 1 --no-progress --out "$RUN/eval-val" --overwrite
