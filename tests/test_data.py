"""Data layer: episodes, validation, windows, normalisers (sources: test_data_formats.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import synthetic_dataset

from diffplan.data import (
    DatasetError,
    Normalizer,
    TrajectoryDataset,
    WindowDataset,
    discounted_returns_to_go,
    make_episode,
)

# --- metadata -------------------------------------------------------------------------------


def test_info_counts_returns_and_v_rate(tiny_dataset):
    info = tiny_dataset.info
    returns = [float(np.sum(e.rewards, dtype=np.float64)) for e in tiny_dataset]
    assert (info.num_episodes, info.num_steps, info.obs_dim, info.act_dim) == (3, 24, 3, 2)
    assert info.mean_return == pytest.approx(np.mean(returns))
    assert info.v_rate == pytest.approx(sum(returns) / 24)
    assert [e.terminated for e in tiny_dataset] == [True, False, False]


def test_reference_scores_known_for_walker():
    episode = synthetic_dataset(obs_dim=17, act_dim=6)[0]
    info = TrajectoryDataset([episode], env_id="Walker2d-v5").info
    assert (info.ref_min_score, info.ref_max_score) == (1.629008, 4592.3)
    assert TrajectoryDataset([episode], env_id="CartPole-v1").info.ref_max_score is None


# --- validation -----------------------------------------------------------------------------


def _episode(**overrides):
    rng = np.random.default_rng(1)
    fields = {
        "observations": rng.normal(size=(6, 3)),
        "actions": rng.normal(size=(5, 2)),
        "rewards": rng.normal(size=5),
    }
    fields.update(overrides)
    return make_episode(**fields, id=4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"observations": np.full((6, 3), np.nan)}, "NaN or inf"),
        ({"rewards": np.array([1, 2, np.inf, 4, 5])}, "rewards contain NaN or inf"),
        ({"observations": np.zeros((5, 3))}, "5 observations for 5 actions"),
        ({"rewards": np.zeros(4)}, "rewards has shape"),
        ({"terminations": np.array([0, 1, 0, 0, 0])}, "terminates or is truncated at step 1"),
        (
            {"actions": np.zeros((0, 2)), "observations": np.zeros((1, 3)), "rewards": np.zeros(0)},
            "has no steps",
        ),
    ],
)
def test_validation_names_file_episode_and_problem(overrides, message):
    with pytest.raises(DatasetError, match=message) as error:
        TrajectoryDataset([_episode(**overrides)], name="some/file.hdf5")
    assert "some/file.hdf5: episode 4" in str(error.value)


def test_empty_dataset_is_refused():
    with pytest.raises(DatasetError, match="no episodes"):
        TrajectoryDataset([], name="empty.hdf5")


def test_dims_must_agree_between_episodes_and_with_env():
    wide = make_episode(np.zeros((3, 4)), np.zeros((2, 2)), np.zeros(2), id=1)
    with pytest.raises(DatasetError, match="episode 1: dims"):
        TrajectoryDataset([_episode(), wide])
    with pytest.raises(DatasetError, match="obs dim 3 and action dim 2"):
        TrajectoryDataset([_episode()]).check_env((17,), (6,))


# --- windows --------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["edge", "zero", "none"])
def test_window_shapes_padding_and_masks(tiny_dataset, padding):
    horizon = 6
    windows = WindowDataset(tiny_dataset, horizon, padding=padding)
    expected = {"none": (7 - 5) + (12 - 5) + 0, "edge": 24, "zero": 24}[padding]
    assert len(windows) == expected
    batch = windows.get_batch(torch.arange(len(windows)))
    assert batch.window.shape == (expected, horizon, 5)
    assert batch.mask.shape == (expected, horizon) and batch.value.shape == (expected,)
    if padding == "none":
        assert batch.mask.all()
        return
    # window 4 starts at step 4 of the 7-step episode 0: rows 4, 5, 6 real, 3 padded
    window, mask = batch.window[4], batch.mask[4]
    assert mask.tolist() == [True, True, True, False, False, False]
    last_real = window[2]
    fill = last_real if padding == "edge" else torch.zeros(5)
    for row in window[3:]:
        torch.testing.assert_close(row, fill)


def test_windows_hold_the_right_steps_and_never_cross_episodes(tiny_dataset):
    windows = WindowDataset(tiny_dataset, 4, padding="edge")
    real = windows.normalizer.unnormalize(windows.get_batch([7 + 3]).window[0])  # ep 1, step 3
    episode = tiny_dataset[1]
    expected = np.concatenate([episode.observations[3:7], episode.actions[3:7]], axis=1)
    np.testing.assert_allclose(real.numpy(), expected, rtol=1e-5, atol=1e-5)
    last = windows.get_batch([6]).window[0]  # episode 0, its last step: all rows from episode 0
    torch.testing.assert_close(last[1:], last[:1].expand(3, -1))


def test_value_targets_match_hand_computation(tiny_dataset):
    windows = WindowDataset(tiny_dataset, 3, discount=0.9, termination_penalty=-100.0)
    values = windows.get_batch(torch.arange(len(windows))).value.double().numpy()
    fell = tiny_dataset[0].rewards.astype(np.float64)
    hand = [
        sum(0.9**j * r for j, r in enumerate(fell[t:])) + 0.9 ** (6 - t) * -100 for t in range(7)
    ]
    np.testing.assert_allclose(values[:7], hand, rtol=1e-5)
    walked = tiny_dataset[1].rewards.astype(np.float64)  # truncated: no penalty
    hand = [sum(0.9**j * r for j, r in enumerate(walked[t:])) for t in range(12)]
    np.testing.assert_allclose(values[7:19], hand, rtol=1e-5)


def test_dropping_terminated_episodes_keeps_the_others_and_the_normaliser(tiny_dataset):
    every = WindowDataset(tiny_dataset, 3)
    walked = WindowDataset(tiny_dataset, 3, drop_terminated=True)
    assert len(every) == 7 + 12 + 5 and len(walked) == 12 + 5  # episode 0 fell
    assert walked.normalizer.state_dict() == every.normalizer.state_dict()
    kept = torch.arange(7, 24)
    torch.testing.assert_close(
        walked.get_batch(torch.arange(17)).window, every.get_batch(kept).window
    )
    torch.testing.assert_close(walked.values, every.values[kept])
    all_fell = synthetic_dataset(lengths=(5, 6), terminated=(True, True))
    with pytest.raises(ValueError, match="every episode terminated"):
        WindowDataset(all_fell, 3, drop_terminated=True)


def test_discounted_returns_to_go_rejects_bad_discount():
    np.testing.assert_allclose(discounted_returns_to_go(np.array([1.0, 1.0]), 0.5), [1.5, 1.0])
    with pytest.raises(ValueError, match="discount"):
        discounted_returns_to_go(np.ones(2), 1.5)


def test_window_options_are_checked(tiny_dataset):
    with pytest.raises(ValueError, match="choose one of"):
        WindowDataset(tiny_dataset, 4, padding="reflect")
    with pytest.raises(ValueError, match="choose one of"):
        WindowDataset(tiny_dataset, 4, normalizer="robust")
    with pytest.raises(ValueError, match="none is at least 20 steps"):
        WindowDataset(tiny_dataset, 20, padding="none")
    foreign = Normalizer.fit(np.zeros((4, 7)))
    with pytest.raises(ValueError, match="belongs to another"):
        WindowDataset(tiny_dataset, 4, normalizer=foreign)


# --- normalisers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "minmax"])
def test_normalizer_inverse_statistics_and_serialisation(kind):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 4)) * [1, 10, 0.1, 0] + [0, 5, -3, 2]  # last dim constant
    normalizer = Normalizer.fit(data, kind)
    normed = normalizer.normalize(data.astype(np.float32))
    np.testing.assert_allclose(normalizer.unnormalize(normed), data, rtol=1e-4, atol=1e-4)
    if kind == "gaussian":
        np.testing.assert_allclose(normed[:, :3].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(normed[:, :3].std(0), 1, atol=1e-4)
    else:
        np.testing.assert_allclose(normed[:, :3].min(0), -1, atol=1e-5)
        np.testing.assert_allclose(normed[:, :3].max(0), 1, atol=1e-5)
    np.testing.assert_allclose(normed[:, 3], 0, atol=1e-6)  # constant dim: no division by 0
    restored = Normalizer.from_state_dict(json.loads(json.dumps(normalizer.state_dict())))
    tensor = torch.as_tensor(data, dtype=torch.float32)
    torch.testing.assert_close(restored.normalize(tensor), torch.as_tensor(normed))


def test_normalizer_fitted_on_real_steps_only(tiny_dataset):
    edge = WindowDataset(tiny_dataset, 8, padding="edge").normalizer
    none = WindowDataset(tiny_dataset, 8, padding="none").normalizer
    np.testing.assert_array_equal(edge.shift, none.shift)
    np.testing.assert_array_equal(edge.scale, none.scale)


def test_normalizer_rejects_wrong_dims():
    normalizer = Normalizer.fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ValueError, match="expected last dimension 3"):
        normalizer.normalize(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="lacks the key"):
        Normalizer.from_state_dict({"kind": "gaussian", "shift": [0.0]})
