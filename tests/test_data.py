"""Data layer: episodes, validation, Minari and D4RL round trips, windows, normalisers."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
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
from diffplan.data.d4rl_format import read_d4rl_hdf5, write_d4rl_hdf5
from diffplan.data.minari_format import read_minari_dir, write_minari_dir
from diffplan.data.sources import load_dataset

ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")


def assert_same_episodes(a: TrajectoryDataset, b: TrajectoryDataset) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)


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


# --- Minari layout --------------------------------------------------------------------------


def test_minari_round_trip_identical_and_loadable_by_minari(tmp_path, tiny_dataset):
    import minari

    write_minari_dir(tiny_dataset, tmp_path / "ds")
    back = read_minari_dir(tmp_path / "ds")
    assert_same_episodes(tiny_dataset, back)
    assert back.source["kind"] == "test"  # provenance survives
    by_minari = minari.MinariDataset(tmp_path / "ds" / "data")
    assert by_minari.total_episodes == 3 and by_minari.total_steps == 24
    np.testing.assert_array_equal(by_minari[1].actions, tiny_dataset[1].actions)


def test_relative_paths_work(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_minari_dir(tiny_dataset, Path("runs/ds"))
    assert_same_episodes(tiny_dataset, load_dataset("runs/ds"))


def test_minari_load_dataset_by_id(tmp_path, tiny_dataset, monkeypatch):
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    write_minari_dir(tiny_dataset, tmp_path / "diffplan" / "tiny-v0", dataset_id="diffplan/tiny-v0")
    assert minari.load_dataset("diffplan/tiny-v0").total_steps == 24
    assert_same_episodes(tiny_dataset, load_dataset("diffplan/tiny-v0"))


def test_minari_missing_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is not in"):
        load_dataset("mujoco/walker2d/expert-v0", download=False)


def test_writing_refuses_dims_that_do_not_fit_the_env(tmp_path, tiny_dataset):
    claimed = TrajectoryDataset(list(tiny_dataset), env_id="Walker2d-v5", name="claims-walker")
    with pytest.raises(DatasetError, match="obs dim 3 and action dim 2"):
        write_minari_dir(claimed, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary leftovers


def test_existing_dataset_is_kept_unless_overwrite(tmp_path, tiny_dataset):
    write_minari_dir(tiny_dataset, tmp_path / "ds")
    other = synthetic_dataset(lengths=(4,), seed=3)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_minari_dir(other, tmp_path / "ds")
    assert_same_episodes(tiny_dataset, read_minari_dir(tmp_path / "ds"))
    write_minari_dir(other, tmp_path / "ds", overwrite=True)
    assert_same_episodes(other, read_minari_dir(tmp_path / "ds"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_failed_write_leaves_previous_dataset_intact(tmp_path, tiny_dataset, monkeypatch):
    from minari.dataset.minari_storage import MinariStorage

    write_minari_dir(tiny_dataset, tmp_path / "ds")

    def crash(self, episodes):
        raise OSError("disk full")

    monkeypatch.setattr(
        type(MinariStorage.read(tmp_path / "ds" / "data")), "update_episodes", crash
    )
    with pytest.raises(OSError, match="disk full"):
        write_minari_dir(synthetic_dataset(seed=9), tmp_path / "ds", overwrite=True)
    assert_same_episodes(tiny_dataset, read_minari_dir(tmp_path / "ds"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_truncated_minari_file_is_a_clear_error(tmp_path, tiny_dataset):
    write_minari_dir(tiny_dataset, tmp_path / "ds")
    data_file = tmp_path / "ds" / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[:500])
    with pytest.raises(DatasetError, match="unreadable or truncated"):
        load_dataset(str(tmp_path / "ds"))


def test_corrupt_minari_metadata_is_a_clear_error(tmp_path, tiny_dataset):
    write_minari_dir(tiny_dataset, tmp_path / "ds")
    (tmp_path / "ds" / "data" / "metadata.json").write_text("{ not json")
    with pytest.raises(DatasetError, match="unreadable or truncated"):
        load_dataset(str(tmp_path / "ds"))


# --- D4RL layout ----------------------------------------------------------------------------


def test_d4rl_round_trip_identical(tmp_path, tiny_dataset):
    write_d4rl_hdf5(tiny_dataset, tmp_path / "d.hdf5")
    assert_same_episodes(tiny_dataset, load_dataset(str(tmp_path / "d.hdf5")))


def test_d4rl_and_minari_give_identical_windows(tmp_path, tiny_dataset):
    write_d4rl_hdf5(tiny_dataset, tmp_path / "d.hdf5")
    write_minari_dir(tiny_dataset, tmp_path / "m")
    from_d4rl = WindowDataset(load_dataset(str(tmp_path / "d.hdf5")), horizon=4)
    from_minari = WindowDataset(load_dataset(str(tmp_path / "m")), horizon=4)
    everything = torch.arange(len(from_d4rl))
    a, b = from_d4rl.get_batch(everything), from_minari.get_batch(everything)
    assert len(from_d4rl) == len(from_minari) == 24
    torch.testing.assert_close(a.window, b.window, rtol=0, atol=0)
    torch.testing.assert_close(a.value, b.value, rtol=0, atol=0)
    assert torch.equal(a.mask, b.mask)


def _flat(tmp_path: Path, keys: dict) -> Path:
    path = tmp_path / "flat.hdf5"
    with h5py.File(path, "w") as file:
        for key, value in keys.items():
            file.create_dataset(key, data=value)
    return path


def test_d4rl_without_timeouts_splits_on_terminals_and_discontinuities(tmp_path):
    obs = np.arange(10, dtype=np.float32)[:, None].repeat(2, axis=1)
    next_obs = obs + 1
    next_obs[5] = 99  # episode boundary after row 5: next obs does not follow
    terminals = np.zeros(10, bool)
    terminals[2] = True
    path = _flat(
        tmp_path,
        {
            "observations": obs,
            "next_observations": next_obs,
            "actions": np.zeros((10, 1)),
            "rewards": np.ones(10),
            "terminals": terminals,
        },
    )
    dataset = read_d4rl_hdf5(path)
    assert [len(e) for e in dataset] == [3, 3, 4]
    assert [e.terminated for e in dataset] == [True, False, False]
    assert [e.truncated for e in dataset] == [False, True, True]
    np.testing.assert_array_equal(dataset[1].observations[:, 0], [3, 4, 5, 99])


def test_d4rl_without_next_observations_drops_last_row_as_final_observation(tmp_path):
    obs = np.arange(8, dtype=np.float32)[:, None]
    timeouts = np.zeros(8, bool)
    timeouts[3] = True
    path = _flat(
        tmp_path,
        {
            "observations": obs,
            "actions": np.zeros((8, 1)),
            "rewards": np.arange(8.0),
            "terminals": np.zeros(8, bool),
            "timeouts": timeouts,
        },
    )
    dataset = read_d4rl_hdf5(path)
    assert [len(e) for e in dataset] == [3, 3]
    np.testing.assert_array_equal(dataset[0].observations[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(dataset[1].rewards, [4, 5, 6])
    assert dataset[0].truncated


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"observations": np.zeros((3, 2))}, "missing actions, rewards, terminals"),
        (
            {
                "observations": np.zeros((3, 2)),
                "actions": np.zeros((2, 1)),
                "rewards": np.zeros(3),
                "terminals": np.zeros(3),
            },
            "actions has 2 rows, observations 3",
        ),
        (
            {
                "observations": np.full((3, 2), np.nan),
                "actions": np.zeros((3, 1)),
                "rewards": np.zeros(3),
                "terminals": np.zeros(3),
            },
            "episode 0: observations contain NaN",
        ),
    ],
)
def test_d4rl_bad_files(tmp_path, keys, message):
    path = _flat(tmp_path, keys)
    with pytest.raises(DatasetError, match=message) as error:
        read_d4rl_hdf5(path)
    assert str(path) in str(error.value)


def test_unreadable_hdf5_names_the_file(tmp_path):
    path = tmp_path / "broken.hdf5"
    path.write_bytes(b"this is not hdf5")
    with pytest.raises(DatasetError, match=r"broken\.hdf5: unreadable or truncated"):
        load_dataset(str(path))


def test_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such D4RL"):
        load_dataset(str(tmp_path / "nope.hdf5"))
    with pytest.raises(FileNotFoundError, match="holds no dataset"):
        load_dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("./missing-dir")


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
