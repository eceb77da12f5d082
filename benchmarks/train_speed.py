"""Training speed: optimiser steps/s and peak RSS of the diffusion model's training step.

For each U-Net size ((1,2,4) and (1,2,4,8), dim 32), horizon (8, 32) and batch size
(32, 256), a fresh subprocess builds a Walker2d-shaped synthetic dataset (17 + 6 dims,
20 episodes of 1000 steps), runs the real :class:`Trainer` step (data gather, loss,
backward, fused Adam, EMA) for a few warm-up steps, then times ``--steps`` steps.

    python benchmarks/train_speed.py [--steps 30] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffplan.checkpoints.store import CheckpointMeta
from diffplan.data import TrajectoryDataset, WindowDataset, make_episode
from diffplan.diffusion import DDPMScheduler, denoising_loss, loss_weights, state_mask
from diffplan.models import TemporalUnet
from diffplan.training import OptimConfig
from diffplan.training.trainer import Trainer, start_process

SIZES = [(1, 2, 4), (1, 2, 4, 8)]
HORIZONS = [8, 32]
BATCHES = [32, 256]
WARMUP = 3


def walker_like(episodes: int = 20, steps: int = 1000) -> TrajectoryDataset:
    rng = np.random.default_rng(0)
    return TrajectoryDataset(
        [
            make_episode(
                rng.normal(size=(steps + 1, 17)),
                rng.uniform(-1, 1, (steps, 6)),
                rng.normal(size=steps),
                id=i,
            )
            for i in range(episodes)
        ]
    )


def measure(dim_mults: tuple[int, ...], horizon: int, batch: int, steps: int, device: str) -> dict:
    """Steps/s and peak RSS of one configuration (run in its own process)."""
    process = start_process(device)  # type: ignore[arg-type]
    windows = WindowDataset(walker_like(), horizon)
    torch.manual_seed(0)
    model = TemporalUnet(horizon, 23, dim=32, dim_mults=dim_mults).to(process.device)
    scheduler = DDPMScheduler(20).to(process.device)
    fixed = state_mask(horizon, 17, 6).to(process.device)
    weights = loss_weights(horizon, 17, 6).to(process.device)

    def loss_fn(net, b, t, noise):  # type: ignore[no-untyped-def]
        return denoising_loss(
            net, scheduler, b.window, b.mask, t, noise, fixed=fixed, weights=weights
        )

    meta = CheckpointMeta("diffusion", {}, {}, {}, windows.normalizer, {})
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model,
            loss_fn,
            windows,
            num_timesteps=20,
            optim=OptimConfig(batch_size=batch),
            out=Path(out),
            seed=0,
            meta=meta,
            process=process,
            progress=False,
        )
        for _ in range(WARMUP):
            trainer.train_step()
        if process.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if process.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return {
        "dim_mults": list(dim_mults),
        "horizon": horizon,
        "batch": batch,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "steps_per_s": steps / elapsed,
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "device": str(process.device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: "mults;H;batch"
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        mults, horizon, batch = args.one.split(";")
        dims = tuple(int(m) for m in mults.split(","))
        print(json.dumps(measure(dims, int(horizon), int(batch), args.steps, args.device)))
        return
    print(
        f"{'dim_mults':<12} {'H':>3} {'batch':>5} {'params':>7} {'steps/s':>8} "
        f"{'peak RSS':>9}  threads device"
    )
    for dims in SIZES:
        for horizon in HORIZONS:
            for batch in BATCHES:
                child = [
                    sys.executable,
                    __file__,
                    "--steps",
                    str(args.steps),
                    "--device",
                    args.device,
                    "--one",
                    f"{','.join(map(str, dims))};{horizon};{batch}",
                ]
                if args.threads is not None:
                    child += ["--threads", str(args.threads)]
                done = subprocess.run(child, capture_output=True, text=True, check=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"{tuple(r['dim_mults'])!s:<12} {r['horizon']:>3} {r['batch']:>5} "
                    f"{r['params_M']:>6.2f}M {r['steps_per_s']:>8.2f} "
                    f"{r['peak_rss_MiB']:>6.0f} MiB  {r['threads']:>7} {r['device']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
