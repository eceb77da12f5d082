"""What training logs: loss, held-out loss, gradient norm and lr in metrics.csv and
TensorBoard; the held-out windows are never drawn for training."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from conftest import synthetic_dataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from diffplan.data.minari_format import write_minari_dir
from diffplan.data.windows import WindowDataset
from diffplan.training import TrainConfig, train
from diffplan.training.config import OptimConfig, UNetConfig
from diffplan.training.trainer import Trainer


def test_metrics_and_tensorboard_hold_every_curve(tmp_path: Path, monkeypatch) -> None:
    dataset = write_minari_dir(synthetic_dataset(lengths=(40, 50, 30)), tmp_path / "ds")
    trainers: list[Trainer] = []
    batches: list[torch.Tensor] = []  # the window indices of every get_batch call
    fit, get_batch = Trainer.fit, WindowDataset.get_batch
    monkeypatch.setattr(Trainer, "fit", lambda self: trainers.append(self) or fit(self))
    monkeypatch.setattr(
        WindowDataset, "get_batch", lambda self, i: batches.append(i) or get_batch(self, i)
    )
    out = tmp_path / "run"
    train(
        TrainConfig(
            dataset=str(dataset),
            out=out,
            progress=False,
            model=UNetConfig(dim=8, dim_mults=(1, 2)),
            diffusion_steps=5,
            optim=OptimConfig(steps=6, batch_size=8, log_every=3, save_every=6, lr=1e-3),
        )
    )
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3, 6]
    for row in rows:
        assert float(row["heldout_loss"]) > 0 and float(row["grad_norm"]) > 0
        assert float(row["lr"]) == 1e-3
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for name in ("loss", "heldout_loss", "grad_norm", "lr", "steps_per_s"):
        assert [e.step for e in events.Scalars(f"train/{name}")] == [3, 6]
    (trainer,) = trainers
    held = set(trainer.heldout.tolist())
    assert 0 < len(held) <= len(trainer.windows) // 10
    trained = [b for b in batches if len(b) == 8]
    assert len(trained) == 6 and not held & set(torch.cat(trained).tolist())
