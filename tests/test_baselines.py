"""Baselines: behaviour cloning learns a toy policy, saves without pickles, runs from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_dataset

from diffplan.baselines.bc import BCConfig, load_policy, save_policy, train_bc
from diffplan.data import TrajectoryDataset, make_episode


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
