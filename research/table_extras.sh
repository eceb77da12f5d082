#!/usr/bin/env bash
# The D4RL table's second ten episodes (seeds 10-19) of one `diffplan run` folder, whose own
# sweeps evaluated seeds 0-9: BC (retrained, training seed 0) and each preset's guided setting.
# Usage: research/table_extras.sh OUT RUN DATASET GUIDED_K   (GUIDED_K: the run's H - 1)
set -euo pipefail
out=$1; run=$2; data=$3; k=$4
mkdir -p "$out"
if [ ! -f "$out/bc/pooled.md" ]; then
  diffplan baseline --dataset "$data" --algo bc --seeds 0 --seed 10 --episodes 10 --out "$out/bc" --no-progress
fi
for preset in tracked report; do
  if [ ! -f "$out/$preset/results.json" ]; then
    inverse=()
    if [ "$preset" = tracked ]; then inverse=(--inverse-dynamics "$run/inverse-dynamics"); fi
    diffplan evaluate --planner "$preset" --diffusion "$run/diffusion" --value "$run/value" "${inverse[@]}" \
      --guided-windows "$k" --episodes 10 --seed 10 --out "$out/$preset" --no-progress
  fi
done
