"""Bad datasets and dataset names: `diffplan info` and `train` refuse each with one line
(exit 2, no traceback) that names the file and says what it was taken for and why."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_errors_checkpoints import run_cli

from diffplan.data.sources import load_dataset


def write_hdf5(path: Path, obs_dim: int = 17, act_dim: int = 6, rows: int = 20) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as file:
        file["observations"] = rng.normal(size=(rows, obs_dim)).astype(np.float32)
        file["actions"] = rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32)
        file["rewards"] = np.ones(rows, np.float32)
        file["terminals"] = np.zeros(rows, bool)
    return path


def test_missing_paths_and_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    cases = {
        "./missing": "starts with '.'",
        "bad/ds-typo": "not of the form namespace/name-vN",
        "runs/data-v0": "runs exists here",
    }
    for source, reason in cases.items():
        err = run_cli(["info", source], capsys)
        assert f"{source} does not exist" in err and reason in err, err
    (tmp_path / "notes.txt").write_text("x")
    err = run_cli(["info", "notes.txt"], capsys)
    assert "notes.txt is a file but not a dataset" in err


@pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is not None, reason="minari[hf] is installed"
)
def test_download_without_the_hf_extra_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"pip install 'minari\[hf\]'"):
        load_dataset("someone/nothing-v0")


def test_d4rl_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = write_hdf5(tmp_path / "empty.hdf5", rows=0)
    assert "non-empty" in run_cli(["info", str(empty)], capsys)
    groups = tmp_path / "groups.hdf5"
    with h5py.File(groups, "w") as file:
        for key in ("observations", "actions", "rewards", "terminals"):
            file.create_group(key)
    err = run_cli(["info", str(groups)], capsys)
    assert str(groups) in err and "groups do not count" in err
    hopper_dims = write_hdf5(tmp_path / "hopper.hdf5", obs_dim=11, act_dim=3)
    err = run_cli(["info", str(hopper_dims), "--env-id", "Walker2d-v5"], capsys)
    assert "obs dim 11" in err and "(17,)" in err and "hopper.hdf5" in err
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(write_hdf5(tmp_path / "whole.hdf5").read_bytes()[:500])
    assert "truncated" in run_cli(["info", str(truncated)], capsys)


def test_overflowing_magnitudes_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 3e38 observation would give a normaliser scale near 6e36 (and inf squares)."""
    path = write_hdf5(tmp_path / "huge.hdf5")
    with h5py.File(path, "a") as file:
        file["observations"][3, 0] = 3e38
    args = ["train", "--dataset", str(path), "--out", str(tmp_path / "run"), "--optim.steps", "2"]
    err = run_cli(args, capsys)
    assert "huge.hdf5" in err and "overflow float32" in err


def test_dataset_id_is_checked_before_collecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["collect", "--out", str(tmp_path / "data"), "--steps", "5", "--no-progress"]
    err = run_cli([*args, "--dataset-id", "not an id"], capsys)
    assert "--dataset-id 'not an id'" in err and "name-vN" in err
    assert not (tmp_path / "data" / "data").exists()


def test_minari_reference_scores_come_from_the_metadata(tmp_path: Path) -> None:
    """A dataset's own ref_min_score/ref_max_score win over the task table's."""
    import json

    from conftest import synthetic_dataset

    from diffplan.data.minari_format import minari_dataset_id, write_minari_dir

    path = write_minari_dir(synthetic_dataset(), tmp_path / "my data")
    metadata_file = path / "data" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    assert metadata["dataset_id"] == minari_dataset_id(path) == "diffplan/my-data-v0"
    metadata.update(ref_min_score=-5.0, ref_max_score=20.0)
    metadata_file.write_text(json.dumps(metadata))
    info = load_dataset(str(path)).info
    assert (info.ref_min_score, info.ref_max_score) == (-5.0, 20.0)
    metadata.update(ref_max_score=-50.0)
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="min below max"):
        load_dataset(str(path))
