"""Bad options: refused before any work with exit code 2, one line naming the option and the
fix; training stops on a non-finite loss; resume refuses a metrics.csv it did not write."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import cli_error, synthetic_dataset

from diffplan.checkpoints.store import checkpoints
from diffplan.data.minari_format import write_minari_dir


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_minari_dir(
        synthetic_dataset(lengths=(20, 30, 25)), tmp_path_factory.mktemp("data") / "ds"
    )


def tiny_train(dataset: Path, out: Path, *options: str) -> list[str]:
    return [
        "train",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--no-progress",
        "--model.dim",
        "8",
        "--model.dim-mults",
        "1",
        "2",
        "--diffusion-steps",
        "5",
        "--optim.batch-size",
        "4",
        "--optim.log-every",
        "1",
        *options,
    ]


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffplan.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    main(tiny_train(dataset, out, "--optim.steps", "2"))
    return out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--threads", "0"], "--threads must be >= 1 (or left out), got 0"),
        (["--threads", "-2"], "--threads must be >= 1 (or left out), got -2"),
        (["--optim.batch-size", "-4"], "--optim.batch-size must be >= 1, got -4"),
        (["--optim.batch-size", "0"], "--optim.batch-size must be >= 1, got 0"),
        (["--optim.steps", "0"], "--optim.steps must be >= 1, got 0"),
        (["--action-weight", "nan"], "--action-weight must be a finite number >= 0, got nan"),
        (["--optim.lr", "nan"], "--optim.lr must be a finite number > 0, got nan"),
        (["--optim.lr", "-1e-3"], "--optim.lr must be a finite number > 0, got -0.001"),
        (["--optim.grad-clip", "inf"], "--optim.grad-clip must be a finite number > 0"),
        (["--diffusion-steps", "0"], "--diffusion-steps must be >= 1, got 0"),
    ],
)
def test_train_options(capsys, tmp_path: Path, options: list[str], message: str) -> None:
    err = cli_error(capsys, "train", "--dataset", "missing", "--out", str(tmp_path), *options)
    assert message in err
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["--threads", "0"], "--threads must be >= 1 (or left out), got 0"),
    ],
)
def test_evaluate_options(capsys, tmp_path: Path, options: list[str], message: str) -> None:
    err = cli_error(capsys, "evaluate", "--diffusion", "x", "--out", str(tmp_path / "e"), *options)
    assert message in err


@pytest.mark.parametrize("env", ["NoSuchEnv-v0", "this:Walker2d-v5"])
def test_collect_env_checked_before_the_rollout(capsys, tmp_path: Path, env: str) -> None:
    err = cli_error(capsys, "collect", "--env", env, "--steps", "10", "--out", str(tmp_path / "d"))
    assert f"--env {env}: not in diffplan's task table" in err
    assert not (tmp_path / "d").exists()


def evaluate_error(capsys, run: Path, out: Path, *options: str) -> str:
    """The one-line error of ``diffplan evaluate`` on the tiny ``run`` with ``options``."""
    return cli_error(capsys, "evaluate", "--diffusion", str(run), "--out", str(out), *options)


def test_sampler_steps_beyond_the_model_are_refused(capsys, run: Path, tmp_path: Path) -> None:
    err = evaluate_error(capsys, run, tmp_path / "e", "--planning.sampler.steps", "1000")
    assert "--planning.sampler.steps 1000 exceeds the model's 5 diffusion steps" in err
    assert "pass at most 5" in err


def test_an_ensemble_that_no_window_can_use_is_refused(capsys, run, tmp_path) -> None:
    err = evaluate_error(
        capsys, run, tmp_path / "e", "--windows", "2", "3", "--planning.temporal-ensemble", "3"
    )
    assert "--planning.temporal-ensemble 3 applies at k = 1 only" in err
    assert "the windows evaluated are [2, 3]" in err
    assert not (tmp_path / "e").exists()


def test_return_guidance_on_an_unconditioned_model_is_refused(capsys, run, tmp_path) -> None:
    err = evaluate_error(capsys, run, tmp_path / "e", "--planning.experimental.returns.weight", "2")
    assert "--planning.experimental.returns.* (" in err
    assert "trained without return conditioning" in err
    assert "--returns.enabled" in err


def test_non_finite_loss_stops_training_without_a_checkpoint(
    capsys, monkeypatch, dataset: Path, tmp_path: Path
) -> None:
    import diffplan.training.commands as commands

    real = commands.denoising_loss
    monkeypatch.setattr(
        commands, "denoising_loss", lambda *a, **k: real(*a, **k) * torch.tensor(float("nan"))
    )
    out = tmp_path / "nan"
    err = cli_error(capsys, *tiny_train(dataset, out, "--optim.steps", "3"))
    assert "training stopped: the loss became nan between step 1 and step 1" in err
    assert "--optim.lr" in err
    assert not checkpoints(out)


def test_resume_refuses_a_foreign_metrics_csv(capsys, dataset: Path, tmp_path: Path) -> None:
    from diffplan.cli import main

    out = tmp_path / "run"
    main(tiny_train(dataset, out, "--optim.steps", "2"))
    (out / "metrics.csv").write_text("setting,mean_return\nk=1,3.0\n")
    err = cli_error(capsys, *tiny_train(dataset, out, "--optim.steps", "4", "--resume"))
    assert f"{out / 'metrics.csv'} has no 'step' column" in err
    assert "start a new --out" in err
