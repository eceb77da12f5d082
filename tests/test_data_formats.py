"""Data sources: the Minari and D4RL layouts' round trips, loading by path or id, and the
errors for missing, truncated or malformed files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import synthetic_dataset

from diffplan.data import DatasetError, TrajectoryDataset, WindowDataset
from diffplan.data.d4rl_format import read_d4rl_hdf5, write_d4rl_hdf5
from diffplan.data.minari_format import read_minari_dir, write_minari_dir
from diffplan.data.sources import load_dataset

ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations")


def assert_same_episodes(a: TrajectoryDataset, b: TrajectoryDataset) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)


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
