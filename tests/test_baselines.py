"""Baselines: behaviour cloning learns a toy policy, saves without pickles, runs from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_dataset

from diffplan.baselines.bc import BCConfig, load_policy, save_policy, train_bc
from diffplan.data import TrajectoryDataset, make_episode
from diffplan.data.minari_format import write_minari_dir


def linear_policy_dataset(seed: int = 0) -> tuple[TrajectoryDataset, np.ndarray]:
    """Episodes whose actions are ``tanh(obs @ W)`` (obs ``(T+1, 4)``, actions ``(T, 2)``)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(4, 2)) * 0.5
    episodes = []
    for index in range(8):
        observations = rng.normal(size=(51, 4)) * 2 + 3
        actions = np.tanh((observations[:-1] - 3) @ weights)
        truncations = np.zeros(50, bool)
        truncations[-1] = True
        episodes.append(
            make_episode(
                observations, actions, np.ones(50), np.zeros(50, bool), truncations, id=index
            )
        )
    return TrajectoryDataset(episodes, name="linear"), weights


def test_bc_learns_a_linear_policy_and_round_trips(tmp_path):
    dataset, weights = linear_policy_dataset()
    low, high = -np.ones(2), np.ones(2)
    config = BCConfig(batch_size=64, hidden=32)
    policy, record = train_bc(dataset, low, high, config, steps=1500, seed=0)
    test_obs = np.random.default_rng(1).normal(size=(200, 4)) * 2 + 3
    target = np.tanh((test_obs - 3) @ weights)
    error = np.abs(policy.act(test_obs) - target).mean()
    assert error < 0.05, f"mean action error {error:.3f} on held-out observations"
    assert np.abs(target).mean() > 0.3  # a constant policy would be far off
    save_policy(policy, tmp_path / "bc", record)
    loaded, meta = load_policy(tmp_path / "bc")
    np.testing.assert_array_equal(loaded.act(test_obs), policy.act(test_obs))
    assert meta["training"]["seed"] == 0 and meta["architecture"]["hidden"] == 32


def test_bc_is_seeded_and_stays_in_bounds():
    dataset = synthetic_dataset()
    low, high = np.array([-0.5, -1.0]), np.array([0.5, 2.0])
    config = BCConfig(batch_size=8, hidden=8)
    first, _ = train_bc(dataset, low, high, config, steps=20, seed=3)
    again, _ = train_bc(dataset, low, high, config, steps=20, seed=3)
    other, _ = train_bc(dataset, low, high, config, steps=20, seed=4)
    obs = np.random.default_rng(0).normal(size=(64, 3)) * 100
    np.testing.assert_array_equal(first.act(obs), again.act(obs))
    assert not np.array_equal(first.act(obs), other.act(obs))
    actions = first.act(obs)
    assert np.all(actions >= low) and np.all(actions <= high)
    assert torch.is_tensor(first.center) and first.act(obs).dtype == np.float32


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"lr": 0.0}, {"hidden": 0}])
def test_bad_bc_options_are_refused(bad):
    with pytest.raises(ValueError, match=r"--bc\."):
        BCConfig(**bad)


@pytest.fixture(scope="module")
def walker_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random dataset of conftest, Walker2d-shaped and written to a folder."""
    walker = synthetic_dataset(lengths=(30, 30, 30), obs_dim=17, act_dim=6)
    root = tmp_path_factory.mktemp("baseline")
    return write_minari_dir(TrajectoryDataset(list(walker), env_id="Walker2d-v5"), root / "data")


def test_baseline_cli_writes_the_evaluate_report_per_seed_and_pools(walker_data, tmp_path):
    out = tmp_path / "bc"
    command = [sys.executable, "-m", "diffplan", "baseline", "--dataset", str(walker_data)]
    command += ["--out", str(out), "--seeds", "0", "1", "--steps", "30", "--episodes", "2"]
    command += ["--seed", "7", "--threads", "1", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for seed in (0, 1):
        folder = out / f"seed-{seed}"
        for name in ("results.json", "metrics.csv", "episodes.csv", "report.md", "policy.json"):
            assert (folder / name).exists(), name
        (record,) = json.loads((folder / "metrics.json").read_text())
        assert record["label"] == "bc" and [e["seed"] for e in record["episodes"]] == [7, 8]
    pooled = json.loads((out / "pooled.json").read_text())
    assert pooled[0]["runs"] == ["seed-0", "seed-1"] and pooled[0]["episodes"] == [2, 2]
    # A second run reuses the trained policies; other options are refused, naming the folder.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "trained" not in again.stdout
    other = subprocess.run([*command, "--bc.hidden", "8"], capture_output=True, text=True)
    assert other.returncode == 2 and "seed-0 holds a policy trained with" in other.stderr


def test_d3rlpy_dataset_keeps_falls_and_time_limits_apart(tiny_dataset):
    pytest.importorskip("d3rlpy")
    from diffplan.baselines.offline_rl import mdp_dataset

    mdp = mdp_dataset(tiny_dataset)  # episode 0 terminates, 1 and 2 are cut by the time limit
    assert [e.terminated for e in mdp.episodes] == [True, False, False]
    assert mdp.transition_count == sum(len(e) for e in tiny_dataset)
    cut = mdp.episodes[1]  # its last row is the final observation, the next state of step T - 1
    np.testing.assert_array_equal(cut.observations[-1], tiny_dataset[1].observations[-1])


@pytest.mark.parametrize("algo", ["iql", "td3bc"])
def test_d3rlpy_baseline_trains_saves_and_evaluates(algo, walker_data, tmp_path):
    pytest.importorskip("d3rlpy")
    from diffplan.baselines.command import BaselineConfig, baseline

    config = BaselineConfig(
        dataset=str(walker_data),
        algo=algo,
        out=tmp_path / algo,
        steps=4,
        episodes=1,
        threads=1,
        device="cpu",
        progress=False,
    )
    (trained,) = baseline(config).values()
    assert trained.label == algo and trained.metrics.episodes == 1
    assert not list(config.out.rglob("*.pt")) and not list(config.out.rglob("*.d3"))  # no pickles
    (reloaded,) = baseline(config).values()  # the saved policy acts as the trained one did
    assert reloaded.episodes == trained.episodes


def test_missing_d3rlpy_names_the_install_command(monkeypatch):
    from diffplan.baselines import offline_rl

    monkeypatch.setattr(offline_rl.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'diffplan\[baselines\]'"):
        offline_rl.require_d3rlpy()
