#!/usr/bin/env bash
# The default recipe across data sources and training seeds (docs/RESULTS.md, "Across data
# and seeds"): per source, a 200,000-step dataset; per training seed, the diffusion model
# (`diffplan train` defaults), the inverse dynamics model (reach 1) and BC; the `tracked`
# preset and BC on held-out episode seeds 1000-1049 at k = 1, 4 and 7. Resumable: rerun.
#
#   research/recipe_grid.sh RUNS SAC_ZIP TQC_ZIP      # then: python research/recipe_table.py RUNS ppo tqc sac
#
# SAC_ZIP / TQC_ZIP: the RL Zoo's Walker2d-v3 agents (sac-Walker2d-v3/Walker2d-v3.zip, ...).
# About 17 min of one core per source and seed (2 cores: run two copies of the loop).
set -euo pipefail
RUNS=$1; SAC=$2; TQC=$3
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"
resume() { [ -d "$1" ] && echo --resume || true; }  # continue a stopped training run
declare -A AGENT=([ppo]="" [sac]=$SAC [tqc]=$TQC)
for src in ppo tqc sac; do
  data=$RUNS/data-$src
  agent=${AGENT[$src]:+--agent ${AGENT[$src]}}
  [ -f "$data/data/metadata.json" ] || diffplan collect $agent --env Walker2d-v5 --steps 200000 --seed 0 --out "$data" --no-progress
  [ -f "$RUNS/bc-$src/pooled.json" ] || diffplan baseline --algo bc --dataset "$data" --seeds 0 1 2 --episodes 50 --seed 1000 --threads 1 --no-progress --out "$RUNS/bc-$src"
  for seed in 0 1 2; do
    run=$RUNS/$src-s$seed
    if [ ! -f "$run/diffusion.done" ]; then  # if-blocks: a failed step stops the script
      diffplan train --dataset "$data" --out "$run/diffusion" --threads 1 --seed $seed --no-progress $(resume "$run/diffusion")
      touch "$run/diffusion.done"
    fi
    if [ ! -f "$run/inverse.done" ]; then
      diffplan train-dynamics --dataset "$data" --kind inverse --out "$run/inverse" --threads 1 --optim.steps 10000 --optim.batch-size 256 --optim.lr 1e-3 --optim.save-every 2500 --optim.ema-start 1000 --seed $seed --no-progress $(resume "$run/inverse")
      touch "$run/inverse.done"
    fi
    [ -f "$run/eval-heldout/results.json" ] || diffplan evaluate --diffusion "$run/diffusion" --inverse-dynamics "$run/inverse" --planner tracked --windows 1 4 7 --episodes 50 --seed 1000 --threads 1 --no-progress --out "$run/eval-heldout" --overwrite
  done
done
