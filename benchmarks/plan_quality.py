"""Score of each planning configuration of ``plan_speed.py`` at k = 1 on a trained model.

    python benchmarks/plan_quality.py --diffusion RUN --value RUN --episodes 10 --threads 1
    python benchmarks/plan_quality.py --diffusion RUN --inverse-dynamics RUN  # tracked planner

Runs the same episode seeds for every configuration (10 side by side, plans
batched) and prints mean return, % of the dataset's mean return, falls and
wall time. A backend computes the same function as eager PyTorch (tested to
1e-4), so the baseline's score is measured with the hybrid backend to save time;
--exact-baseline runs it eagerly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
import torch
import tyro
from plan_speed import GUIDED, UNGUIDED

from diffplan.checkpoints import load_diffusion, load_value_network
from diffplan.data.episodes import DatasetInfo
from diffplan.evaluation.closed_loop import run_episodes
from diffplan.evaluation.metrics import summarize
from diffplan.planning.dynamics import ActionsFromStates


@dataclass
class Options:
    diffusion: Path
    """Trained diffusion run or checkpoint."""
    value: Path | None = None
    """Trained value run (needed for the guided configurations)."""
    inverse_dynamics: Path | None = None
    """Inverse dynamics run: every configuration tracks the planned states with it
    (`diffplan evaluate --inverse-dynamics RUN --planning.track-states`)."""
    episodes: int = 10
    """Episodes per configuration (seeds 0 .. episodes-1)."""
    only: tuple[str, ...] = ()
    """Run only the configurations whose label contains one of these strings."""
    exact_baseline: bool = False
    """Run baselines with the eager backend instead of hybrid."""
    threads: int = 1
    """torch (and ONNX Runtime) CPU threads."""


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    generator, diffusion = load_diffusion(options.diffusion)
    data = DatasetInfo(**diffusion.meta.dataset)
    value_net = load_value_network(options.value) if options.value else None
    inverse = ActionsFromStates(options.inverse_dynamics) if options.inverse_dynamics else None
    env = gym.make(data.env_id or "Walker2d-v5")
    low, high = env.action_space.low, env.action_space.high
    env.close()
    settings = [(label, config, None) for label, config in UNGUIDED.items()]
    if value_net is not None:
        settings += [(label, config, value_net) for label, config in GUIDED.items()]
    if options.only:
        settings = [s for s in settings if any(word in s[0] for word in options.only)]
    seeds = list(range(options.episodes))
    tracked = f", tracking with {options.inverse_dynamics}" if inverse else ""
    print(
        f"{options.diffusion}: k = 1, {options.episodes} episodes, "
        f"data mean {data.mean_return:.1f}{tracked}"
    )
    for label, config, value in settings:
        if label.startswith("baseline") and not options.exact_baseline:
            config = replace(config, backend="hybrid")
        config = replace(config, track_states=inverse is not None)
        generator.set_backend(config.backend)
        planner = config.make_planner(
            generator,
            1,
            value_net=value,
            inverse_dynamics=inverse,
            action_low=low,
            action_high=high,
            seed=0,
        )
        began = time.perf_counter()
        metrics = summarize(run_episodes(planner, data.env_id or "Walker2d-v5", seeds), data)
        print(
            f"{label:<52} return {metrics.mean_return:7.1f} ± {metrics.std_return:6.1f}  "
            f"{metrics.percent_of_data:5.1f} % of data  falls {metrics.falls}/{metrics.episodes}  "
            f"{time.perf_counter() - began:6.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(tyro.cli(Options))
