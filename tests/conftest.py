"""Shared fixtures: tiny synthetic datasets and the optional ../shared agents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.data import TrajectoryDataset, make_episode

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one torch thread (more threads only contend, on a busy machine 10x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


AGENTS = SHARED / "data" / "walker2d-agents"


def synthetic_dataset(
    lengths: tuple[int, ...] = (7, 12, 5),
    obs_dim: int = 3,
    act_dim: int = 2,
    seed: int = 0,
    terminated: tuple[bool, ...] | None = None,
) -> TrajectoryDataset:
    """Random episodes; the first one terminates (a fall), the others are truncated."""
    rng = np.random.default_rng(seed)
    terminated = terminated or tuple(i == 0 for i in range(len(lengths)))
    episodes = []
    for index, (steps, fell) in enumerate(zip(lengths, terminated, strict=True)):
        terminations, truncations = np.zeros(steps, bool), np.zeros(steps, bool)
        terminations[-1], truncations[-1] = fell, not fell
        episodes.append(
            make_episode(
                rng.normal(size=(steps + 1, obs_dim)) * 3 + 1,
                rng.uniform(-1, 1, size=(steps, act_dim)),
                rng.normal(size=steps) + 2,
                terminations,
                truncations,
                id=index,
            )
        )
    return TrajectoryDataset(episodes, env_id=None, source={"kind": "test"}, name="synthetic")


@pytest.fixture
def tiny_dataset() -> TrajectoryDataset:
    return synthetic_dataset()


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``diffplan ARGS`` in this process; assert exit code 2 and no traceback; the message."""
    from diffplan.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def agent_zip(name: str) -> Path:
    """Path to a shared RL Zoo agent zip; skips the test where ../shared is absent."""
    path = AGENTS / f"{name}-Walker2d-v3" / "Walker2d-v3.zip"
    if not path.exists():
        pytest.skip(f"{path} not found: the shared agents live in ../shared beside the repository")
    return path
