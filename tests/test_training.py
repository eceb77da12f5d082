"""Training: learning known dynamics, checkpoints, exact resume, CLI and torchrun."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffplan.checkpoints import build_network, load_generator
from diffplan.checkpoints import store as ckpt
from diffplan.data import TrajectoryDataset, WindowDataset, make_episode
from diffplan.data.minari_format import write_minari_dir
from diffplan.data.sources import load_dataset
from diffplan.diffusion import DDPMScheduler, TrajectoryGenerator
from diffplan.models import TemporalUnet
from diffplan.training import (
    OptimConfig,
    TrainConfig,
    TrainValueConfig,
    UNetConfig,
    ValueNetConfig,
    WindowConfig,
    train,
    train_value,
)
from diffplan.training.ema import EMA

ROOT = Path(__file__).resolve().parents[1]
ANGLE = 0.3  # toy dynamics: rotate the 2-D state by ANGLE, push its first coordinate by 0.2 a
ROTATION = np.array([[np.cos(ANGLE), -np.sin(ANGLE)], [np.sin(ANGLE), np.cos(ANGLE)]])


def toy_dynamics_dataset(episodes: int = 40, steps: int = 40, seed: int = 0) -> TrajectoryDataset:
    """``s' = R s + (0.2 a, 0)``, ``a ~ U(-1, 1)``: obs_dim 2, act_dim 1."""
    rng = np.random.default_rng(seed)
    data = []
    for index in range(episodes):
        actions = rng.uniform(-1, 1, size=(steps, 1))
        obs = np.empty((steps + 1, 2))
        angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
        obs[0] = radius * np.array([np.cos(angle), np.sin(angle)])
        for t in range(steps):
            obs[t + 1] = ROTATION @ obs[t] + np.array([0.2 * actions[t, 0], 0.0])
        truncations = np.zeros(steps, bool)
        truncations[-1] = True
        rewards = -np.abs(obs[1:, 0])
        data.append(make_episode(obs, actions, rewards, truncations=truncations, id=index))
    return TrajectoryDataset(data, source={"kind": "toy dynamics"}, name="toy")


def dynamics_error(windows: torch.Tensor) -> float:
    """RMS of ``s_{t+1} - f(s_t, a_t)`` over all steps of raw windows ``(B, H, 3)``."""
    w = windows.double().numpy()
    predicted = w[:, :-1, :2] @ ROTATION.T + np.stack([0.2 * w[:, :-1, 2], 0 * w[:, :-1, 2]], -1)
    return float(np.sqrt(np.mean((w[:, 1:, :2] - predicted) ** 2)))


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_minari_dir(toy_dynamics_dataset(), tmp_path_factory.mktemp("data") / "toy")


def tiny_config(dataset: Path, out: Path, **optim: int | float) -> TrainConfig:
    settings = {
        "steps": 12,
        "batch_size": 8,
        "log_every": 1,
        "save_every": 4,
        "ema_start": 4,
        "ema_every": 2,
        **optim,
    }
    return TrainConfig(
        dataset=str(dataset),
        out=out,
        progress=False,
        threads=1,
        model=UNetConfig(dim=8, dim_mults=(1, 2)),
        diffusion_steps=10,
        optim=OptimConfig(**settings),  # type: ignore[arg-type]
    )


def read_losses(run: Path) -> dict[int, str]:
    with (run / "metrics.csv").open() as f:
        return {int(row["step"]): row["loss"] for row in csv.DictReader(f)}


# --- learning --------------------------------------------------------------------------------


def test_short_training_learns_the_dynamics(toy_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(
        toy_dir,
        tmp_path / "run",
        steps=400,
        batch_size=64,
        log_every=50,
        save_every=400,
        ema_start=0,
        ema_every=1,
        ema_decay=0.95,
        lr=3e-3,
    )
    # The toy's actions are random: weighting them 10x would only slow down the test.
    config = replace(config, model=UNetConfig(dim=16, dim_mults=(1, 2)), action_weight=1.0)
    logged = train(config)
    assert logged[-1][1] < 0.5 * logged[0][1]

    trained = load_generator(tmp_path / "run")
    torch.manual_seed(0)
    untrained = TrajectoryGenerator(
        build_network(ckpt.read_meta(ckpt.resolve(tmp_path / "run")).architecture),
        DDPMScheduler(10),
        trained.normalizer,
        obs_dim=2,
    )
    start = torch.as_tensor(toy_dynamics_dataset(episodes=8, seed=1)[0].observations[:32])
    before = dynamics_error(untrained.sample(start, generator=torch.Generator().manual_seed(0)))
    after = dynamics_error(trained.sample(start, generator=torch.Generator().manual_seed(0)))
    data = dynamics_error(
        torch.as_tensor(
            np.concatenate(
                [toy_dynamics_dataset()[0].observations[:8], toy_dynamics_dataset()[0].actions[:8]],
                1,
            )
        )[None]
    )
    assert data < 1e-5  # the checker itself is right
    print("dynamics error before/after training", before, after)
    assert after < 0.25 * before, (before, after)


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_layout_and_save_load_gives_identical_samples(
    toy_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny_config(toy_dir, run, steps=8, keep_checkpoints=1))
    assert [p.name for p in ckpt.checkpoints(run)] == ["step_000000008"]
    checkpoint = ckpt.resolve(run)
    names = sorted(p.name for p in checkpoint.iterdir())
    assert names == [
        "config.json",
        "dataset.json",
        "ema.safetensors",
        "model.safetensors",
        "normalizer.json",
        "trainer_state.pt",
    ]
    meta = ckpt.read_meta(checkpoint)
    assert meta.kind == "diffusion" and meta.dataset["obs_dim"] == 2
    assert meta.architecture["dim_mults"] == [1, 2]
    assert ckpt.load_trainer_state(checkpoint)["step"] == 8
    assert (run / "config.json").is_file() and (run / "tensorboard").is_dir()

    # The in-memory network with the saved weights and the reloaded generator agree exactly.
    model = TemporalUnet(8, 3, dim=8, dim_mults=(1, 2))
    model.load_state_dict(load_file(str(checkpoint / "ema.safetensors")))
    scheduler = DDPMScheduler(10)
    in_memory = TrajectoryGenerator(model.eval(), scheduler, meta.normalizer, obs_dim=2)
    obs = torch.randn(5, 2)
    expected = in_memory.sample(obs, generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        loaded = load_generator(run).sample(obs, generator=torch.Generator().manual_seed(3))
        assert torch.equal(loaded, expected)
    live_generator = load_generator(run, weights="model")
    live = live_generator.sample(obs, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(live, expected)  # EMA weights differ from the live ones


def test_checkpoint_of_another_shape_is_refused(toy_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(toy_dir, run, steps=4))
    wider = replace(
        tiny_config(toy_dir, run, steps=8), resume=True, model=UNetConfig(dim=16, dim_mults=(1, 2))
    )
    message = r"another model/config: model.dim: 8 \(checkpoint\) vs 16 \(now\)"
    with pytest.raises(ValueError, match=message):
        train(wider)
    other_horizon = replace(
        wider, model=UNetConfig(dim=8, dim_mults=(1, 2)), windows=WindowConfig(horizon=16)
    )
    with pytest.raises(ValueError, match=r"windows.horizon: 8 \(checkpoint\) vs 16 \(now\)"):
        train(other_horizon)
    with pytest.raises(ValueError, match=r"does not fit this network: .*\(checkpoint\) vs"):
        ckpt.load_weights(ckpt.resolve(run), TemporalUnet(8, 3, dim=16, dim_mults=(1, 2)))
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(toy_dir, run, steps=8))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(replace(tiny_config(toy_dir, tmp_path / "empty"), resume=True))


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(
    toy_dir: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    train(tiny_config(toy_dir, whole, steps=12))

    parts = tmp_path / "parts"
    train(tiny_config(toy_dir, parts, steps=7))  # checkpoints at 4 and 7
    # A crash after step 7 but before its checkpoint: only step 4 survives, the log goes to 7.
    for late in ckpt.checkpoints(parts)[1:]:
        for f in late.iterdir():
            f.unlink()
        late.rmdir()
    train(replace(tiny_config(toy_dir, parts, steps=12), resume=True))

    assert read_losses(parts) == read_losses(whole)
    assert sorted(read_losses(parts)) == list(range(1, 13))
    for which in ("model", "ema"):
        a = load_file(str(ckpt.resolve(whole) / f"{which}.safetensors"))
        b = load_file(str(ckpt.resolve(parts) / f"{which}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_value_network_training_stores_its_target_normaliser(toy_dir: Path, tmp_path: Path) -> None:
    config = TrainValueConfig(
        dataset=str(toy_dir),
        out=tmp_path / "value",
        progress=False,
        threads=1,
        model=ValueNetConfig(dim=8, dim_mults=(1, 2), hidden=16),
        diffusion_steps=10,
        optim=OptimConfig(steps=60, batch_size=32, log_every=20, save_every=60, lr=1e-3),
    )
    logged = train_value(config)
    assert logged[-1][1] < logged[0][1]
    meta = ckpt.read_meta(ckpt.resolve(tmp_path / "value"))
    assert meta.kind == "value" and meta.targets is not None
    windows = WindowDataset(load_dataset(str(toy_dir)), 8)
    values = windows.get_batch(torch.arange(len(windows))).value.double()
    assert meta.targets.shift[0] == pytest.approx(values.mean().item(), rel=1e-5)
    assert meta.targets.scale[0] == pytest.approx(values.std(correction=0).item(), rel=1e-5)
    with pytest.raises(ValueError, match="value network, not a diffusion model"):
        load_generator(tmp_path / "value")


# --- command line and torchrun ---------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def test_cli_help_and_tiny_run(toy_dir: Path, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "diffplan")
    help_text = run_cli(exe, "train", "--help")
    assert help_text.returncode == 0
    for flag in (
        "--dataset",
        "--out",
        "--seed",
        "--device",
        "--optim.batch-size",
        "--model.dim-mults",
        "--prediction",
        "--action-weight",
        "--optim.ema-decay",
    ):
        assert flag in help_text.stdout
    assert run_cli(exe, "train-value", "--help").returncode == 0

    common = [
        "--dataset",
        str(toy_dir),
        "--no-progress",
        "--threads",
        "1",
        "--model.dim",
        "8",
        "--model.dim-mults",
        "1",
        "2",
        "--optim.steps",
        "3",
        "--optim.log-every",
        "1",
    ]
    done = run_cli(exe, "train", *common, "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert sorted(read_losses(tmp_path / "run")) == [1, 2, 3]

    bad = run_cli(exe, "train", *common, "--out", str(tmp_path / "bad"), "--windows.horizon", "5")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("diffplan: error: horizon 5 must be a positive multiple")


def test_torchrun_two_processes_match_one(toy_dir: Path, tmp_path: Path) -> None:
    args = [
        "-m",
        "diffplan",
        "train",
        "--dataset",
        str(toy_dir),
        "--no-progress",
        "--model.dim",
        "8",
        "--model.dim-mults",
        "1",
        "2",
        "--diffusion-steps",
        "10",
        "--optim.steps",
        "6",
        "--optim.batch-size",
        "8",
        "--optim.log-every",
        "1",
        "--optim.ema-start",
        "2",
        "--optim.ema-every",
        "1",
    ]
    one = run_cli(sys.executable, *args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = run_cli(
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        *args,
        "--out",
        str(tmp_path / "two"),
    )
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "two" / "config.json").read_text().count('"world_size": 2') == 1

    a, b = read_losses(tmp_path / "one"), read_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([float(b[s]) for s in b], [float(a[s]) for s in a], rtol=1e-4)
    # The trained networks: both runs move the same initial network (seed 0) the same way, up
    # to rounding. (Compared as functions: Adam's first steps are ~lr * sign(gradient), so
    # weights whose gradient is ~0 take rounding-driven +-lr steps that barely matter.)
    checkpoint = ckpt.resolve(tmp_path / "one")
    architecture = ckpt.read_meta(checkpoint).architecture
    torch.manual_seed(0)
    networks = [build_network(architecture) for _ in range(3)]
    networks[1].load_state_dict(load_file(str(checkpoint / "model.safetensors")))
    other = ckpt.resolve(tmp_path / "two")
    networks[2].load_state_dict(load_file(str(other / "model.safetensors")))
    x, t = torch.randn(64, 8, 3, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 10
    with torch.no_grad():
        initial, one, two = (network(x, t) for network in networks)
    assert (two - one).norm() < 0.01 * (one - initial).norm()


def test_ema_resets_before_start_then_averages_every_k_steps() -> None:
    live = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        live.weight.fill_(1.0)
    ema = EMA(live, decay=0.9, start=4, every=2)
    with torch.no_grad():
        live.weight.fill_(3.0)
    ema.update(live, 1)  # not an update step
    assert ema.model.weight.item() == 1.0
    ema.update(live, 2)  # before start: copy
    assert ema.model.weight.item() == 3.0
    with torch.no_grad():
        live.weight.fill_(13.0)
    ema.update(live, 4)  # from start on: 0.9 * 3 + 0.1 * 13
    assert ema.model.weight.item() == pytest.approx(4.0)
    assert not ema.model.weight.requires_grad
    with pytest.raises(ValueError, match="ema"):
        EMA(live, decay=1.5)
