"""Open-loop accuracy of a trained model: how close a plan's first action is to the data's.

    python research/action_error.py --dataset DATA --diffusion CKPT [CKPT ...] [--bc DIR]

Draws --windows windows of the dataset (seeded), plans from each window's first
state, and prints the mean squared error of the plan's first action against the
window's, and of the later states, in normalised units (per-dimension unit variance
with the default Gaussian normaliser), for the report's sampler and the default one.
With --bc, also the error of a behaviour-cloning policy's action in the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from diffplan.baselines.bc import load_policy
from diffplan.checkpoints.loading import load_generator
from diffplan.data.sources import load_dataset
from diffplan.data.windows import WindowBatch, WindowDataset
from diffplan.diffusion import SamplerConfig

SAMPLERS = {
    "ddpm 20": SamplerConfig("ddpm", 20),
    "dpm-solver++ 5": SamplerConfig("dpm-solver++", 5),
}


@dataclass
class Options:
    dataset: str
    """Dataset source the models were trained on."""
    diffusion: tuple[Path, ...]
    """Diffusion runs or checkpoints."""
    windows: int = 400
    """Windows drawn from the dataset."""
    bc: Path | None = None
    """A `diffplan baseline --algo bc` seed folder (OUT/seed-N), scored on the same windows."""
    threads: int = 1
    """torch CPU threads."""


def drawn_windows(dataset, generator, count: int) -> tuple[WindowBatch, torch.Tensor]:
    """``count`` of ``dataset``'s windows drawn with seed 0, normalised as ``generator``'s
    model was trained, and the same windows ``(count, H, D)`` in raw units."""
    windows = WindowDataset(dataset, generator.horizon, normalizer=generator.normalizer)
    draw = torch.Generator().manual_seed(0)
    batch = windows.get_batch(torch.randint(len(windows), (count,), generator=draw))
    return batch, generator.normalizer.unnormalize(batch.window)


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    dataset = load_dataset(options.dataset)
    bc = None if options.bc is None else load_policy(options.bc)[0]
    for path in options.diffusion:
        generator = load_generator(path)
        batch, raw = drawn_windows(dataset, generator, options.windows)
        obs_dim = generator.obs_dim
        first_states = raw[:, 0, :obs_dim]
        for label, sampler in SAMPLERS.items():
            plans = generator.sample(
                first_states, sampler=sampler, generator=torch.Generator().manual_seed(1)
            )
            planned = generator.normalizer.normalize(plans)
            action_error = (planned[:, 0, obs_dim:] - batch.window[:, 0, obs_dim:]).pow(2).mean()
            state_error = (planned[:, 1:, :obs_dim] - batch.window[:, 1:, :obs_dim]).pow(2).mean()
            print(
                f"{path}  {label:<15} first-action MSE {action_error:.4f}  "
                f"later-state MSE {state_error:.4f}"
            )
        if bc is not None:
            with_bc = raw.clone()
            with_bc[:, 0, obs_dim:] = torch.as_tensor(bc.act(first_states.numpy()))
            normed = generator.normalizer.normalize(with_bc)[:, 0, obs_dim:]
            bc_error = (normed - batch.window[:, 0, obs_dim:]).pow(2).mean()
            print(f"{options.bc}  bc{'':13} first-action MSE {bc_error:.4f}")


if __name__ == "__main__":
    main(tyro.cli(Options))
