"""The training loop shared by the diffusion model and the value network.

Randomness: step ``n`` draws its global batch (window indices, diffusion steps,
noise) from a generator seeded with ``(seed, n)``, so a resumed run repeats an
uninterrupted one exactly. Under ``torchrun`` every process draws the same global
batch and trains on its own contiguous shard; DDP averages the gradients, so
``N`` processes compute what one process computes on the whole batch.
Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import diffplan
from diffplan.atomic import atomic_path, remove_directory, write_json
from diffplan.checkpoints import store as ckpt
from diffplan.data.windows import WindowBatch, WindowDataset
from diffplan.runtime import DeviceChoice, git_revision, resolve_device
from diffplan.training.config import OptimConfig
from diffplan.training.ema import EMA

# loss(network, batch shard, diffusion steps (b,), noise (b, H, D)) -> scalar
LossFn = Callable[[nn.Module, WindowBatch, torch.Tensor, torch.Tensor], torch.Tensor]
METRICS = ("step", "loss", "heldout_loss", "grad_norm", "lr", "steps_per_s", "elapsed_s")


@dataclass(frozen=True)
class Process:
    """This process's place in a (possibly single-process) job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_process(choice: DeviceChoice, threads: int | None = None) -> Process:
    """Resolve ``--device``, set torch's CPU ``threads`` if given and, under torchrun
    (``WORLD_SIZE > 1``), join the process group (nccl on CUDA, gloo on CPU)."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(choice)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Process(0, 1, device)
    use_cuda = device.type == "cuda"
    if use_cuda:
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), device)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of step ``step``'s randomness (independent of rank and history)."""
    state = np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Adam:
    """Adam, fused where this torch build supports it for the parameters' device."""
    params = list(model.parameters())
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr)


class Trainer:
    """Trains ``model`` on ``windows`` with ``loss_fn``; see the module docstring.

    Args:
        model: the network (on ``process.device``).
        loss_fn: the objective, called on this process's shard.
        windows: training windows.
        num_timesteps: ``T_d``; diffusion steps are drawn uniformly from ``[0, T_d)``.
        optim: loop settings.
        out: run directory (written by rank 0).
        seed: randomness of every step (see :func:`step_generator`).
        meta: what checkpoints record besides weights.
        process: from :func:`start_process`.
        progress: show a tqdm bar (rank 0).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        windows: WindowDataset,
        *,
        num_timesteps: int,
        optim: OptimConfig,
        out: Path,
        seed: int,
        meta: ckpt.CheckpointMeta,
        process: Process,
        progress: bool = True,
    ) -> None:
        if optim.batch_size % process.world_size:
            raise ValueError(
                f"batch size {optim.batch_size} must be divisible by the number of processes "
                f"({process.world_size})"
            )
        self.model, self.loss_fn, self.windows = model, loss_fn, windows
        self.num_timesteps, self.optim, self.out, self.seed = num_timesteps, optim, Path(out), seed
        self.meta, self.process, self.progress = meta, process, progress
        self.net: nn.Module = model
        if process.world_size > 1:
            ids = [process.device.index] if process.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        self.optimizer = make_optimizer(model, optim.lr)
        self.ema = EMA(model, decay=optim.ema_decay, start=optim.ema_start, every=optim.ema_every)
        self.step = 0
        self.elapsed = 0.0
        # A fixed held-out split (seeded): never trained on, its loss logged every log_every.
        order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
        held = min(optim.heldout_windows, len(windows) // 10)
        self.heldout, self.train_indices = order[:held].sort().values, order[held:].sort().values

    # --- state -----------------------------------------------------------------------------

    def restore(self, checkpoint: Path) -> None:
        """Continue from ``checkpoint``: weights, EMA, optimiser, step, RNG, elapsed time."""
        ckpt.check_compatible(checkpoint, self.meta.kind, self.meta.fingerprint)
        ckpt.load_weights(checkpoint, self.model, "model")
        ckpt.load_weights(checkpoint, self.ema.model, "ema")
        state = ckpt.load_trainer_state(checkpoint)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])

    def save(self) -> None:
        directory = self.out / "checkpoints" / f"step_{self.step:09d}"
        ckpt.save_checkpoint(
            directory,
            step=self.step,
            model=self.model,
            ema=self.ema.model,
            optimizer=self.optimizer,
            meta=self.meta,
            extra={"elapsed_s": self.elapsed},
        )
        for old in ckpt.checkpoints(self.out)[: -self.optim.keep_checkpoints]:
            remove_directory(old)

    # --- loop ------------------------------------------------------------------------------

    def draw(self, step: int) -> tuple[WindowBatch, torch.Tensor, torch.Tensor]:
        """This process's shard of step ``step``'s batch, diffusion steps and noise."""
        generator = step_generator(self.seed, step)
        size = self.optim.batch_size
        indices = self.train_indices[
            torch.randint(len(self.train_indices), (size,), generator=generator)
        ]
        t = torch.randint(self.num_timesteps, (size,), generator=generator)
        shape = (size, self.windows.horizon, self.windows.transition_dim)
        noise = torch.randn(shape, generator=generator)
        shard = slice(
            self.process.rank * size // self.process.world_size,
            (self.process.rank + 1) * size // self.process.world_size,
        )
        device = self.process.device
        batch = self.windows.get_batch(indices[shard]).to(device)
        return batch, t[shard].to(device), noise[shard].to(device)

    @torch.no_grad()
    def heldout_loss(self) -> float | None:
        """The loss of the held-out windows (fixed diffusion steps and noise), or None."""
        if not len(self.heldout):
            return None
        generator = step_generator(self.seed, 0)  # step 0: never a training step
        size = len(self.heldout)
        t = torch.randint(self.num_timesteps, (size,), generator=generator)
        noise = torch.randn(
            (size, self.windows.horizon, self.windows.transition_dim), generator=generator
        )
        device = self.process.device
        batch = self.windows.get_batch(self.heldout).to(device)
        self.model.eval()
        return self.loss_fn(self.model, batch, t.to(device), noise.to(device)).item()

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; returns the (detached) loss of this process's shard and the
        gradient's global norm (before clipping)."""
        self.step += 1
        batch, t, noise = self.draw(self.step)
        self.net.train()
        loss = self.loss_fn(self.net, batch, t, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = float("inf") if self.optim.grad_clip is None else self.optim.grad_clip
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        return loss.detach(), norm.detach()

    def check_finite(self, running: torch.Tensor, since: int) -> None:
        """Stop with a ``ValueError`` if the loss summed since step ``since`` is not finite."""
        if not torch.isfinite(running):
            raise ValueError(
                f"training stopped: the loss became {running.item()} between step {since + 1} "
                f"and step {self.step} (no checkpoint of these weights was saved); try a lower "
                "--optim.lr, --optim.grad-clip 1.0, or check the dataset and loss weights "
                "(--action-weight) for non-finite or huge values"
            )

    def fit(self) -> list[tuple[int, float]]:
        """Train up to ``optim.steps``; returns the logged ``(step, mean loss)`` pairs."""
        logger = MetricsLogger(self.out, self.step) if self.process.is_main else None
        bar = tqdm(
            total=self.optim.steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.process.is_main),
        )
        logged: list[tuple[int, float]] = []
        running = torch.zeros((), device=self.process.device)
        norms = torch.zeros((), device=self.process.device)
        count, tick = 0, time.perf_counter()
        start, elapsed_before = tick, self.elapsed
        try:
            while self.step < self.optim.steps:
                loss_now, norm = self.train_step()
                running += loss_now
                norms += norm
                count += 1
                self.elapsed = elapsed_before + time.perf_counter() - start
                bar.update(1)
                last = self.step == self.optim.steps
                save = self.step % self.optim.save_every == 0 or last
                if save:
                    self.check_finite(running, self.step - count)
                if self.step % self.optim.log_every == 0 or last:
                    if self.process.world_size > 1:
                        dist.all_reduce(running)
                        running /= self.process.world_size
                    self.check_finite(running, self.step - count)
                    now = time.perf_counter()
                    loss, rate = running.item() / count, count / (now - tick)
                    logged.append((self.step, loss))
                    bar.set_postfix(loss=f"{loss:.4f}")
                    if logger is not None:
                        row = {
                            "step": self.step,
                            "loss": loss,
                            "heldout_loss": self.heldout_loss(),
                            "grad_norm": norms.item() / count,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "steps_per_s": rate,
                            "elapsed_s": self.elapsed,
                        }
                        logger.log(row)
                    running.zero_()
                    norms.zero_()
                    count, tick = 0, time.perf_counter()
                if self.process.is_main and save:
                    self.save()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        return logged


class MetricsLogger:
    """``metrics.csv`` and TensorBoard scalars (``<out>/tensorboard``), one row per log.

    ``columns[0]`` counts the rows (step, iteration); rows after ``start`` (left by a run
    that went on past its last checkpoint) are dropped so that a resumed run's curve has
    each step once. Every number of a row but the first goes to TensorBoard as ``train/NAME``.
    """

    def __init__(self, out: Path, start: int, columns: tuple[str, ...] = METRICS) -> None:
        self.path, self.columns = out / "metrics.csv", columns
        rows = []
        if start > 0 and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                if columns[0] not in (reader.fieldnames or ()):
                    raise ValueError(
                        f"{self.path} has no {columns[0]!r} column (another command overwrote "
                        f"it?): move it away to resume without the earlier curve, or start a "
                        "new --out"
                    )
                rows = [r for r in reader if int(r[columns[0]]) <= start]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(str(out / "tensorboard"), purge_step=start + 1)

    def log(self, row: dict[str, float | int | None]) -> None:
        """Append ``row`` (a value per column; None: left empty)."""
        self.writer.writerow({k: _format(row[k]) for k in self.columns})
        self.file.flush()
        step = int(row[self.columns[0]])  # type: ignore[arg-type]
        for name in self.columns[1:]:
            if row[name] is not None:
                self.tensorboard.add_scalar(f"train/{name}", row[name], step)

    def close(self) -> None:
        self.file.close()
        self.tensorboard.close()


def _format(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def write_run_config(out: Path, config: dict[str, Any], process: Process) -> None:
    """``<out>/config.json``: the resolved config, git revision and versions."""
    write_json(
        out / "config.json",
        {
            "config": ckpt.jsonable(config),
            "git_revision": git_revision(),
            "diffplan_version": diffplan.__version__,
            "torch_version": torch.__version__,
            "world_size": process.world_size,
            "device": str(process.device),
        },
    )
