"""Output folders: a command refuses an --out holding another command's output, and its own
without --overwrite; --overwrite leaves none of the old files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli_error, synthetic_dataset

from diffplan.data.minari_format import write_minari_dir
from diffplan.outputs import MARKER, folder_kind, output_folder
from diffplan.training import TrainConfig, train
from diffplan.training.config import OptimConfig, UNetConfig


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_minari_dir(
        synthetic_dataset(lengths=(20, 30, 25)), tmp_path_factory.mktemp("data") / "ds"
    )


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    train(
        TrainConfig(
            dataset=str(dataset),
            out=out,
            progress=False,
            model=UNetConfig(dim=8, dim_mults=(1, 2)),
            diffusion_steps=5,
            optim=OptimConfig(steps=2, batch_size=4, log_every=1, save_every=2),
        )
    )
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_kinds_are_recorded_and_recognised(dataset: Path, run: Path) -> None:
    assert folder_kind(dataset) == "collect"
    assert json.loads((run / MARKER).read_text()) == {"kind": "train"}
    assert folder_kind(run) == "train"


def test_train_refuses_a_dataset(capsys, dataset: Path) -> None:
    before = snapshot(dataset)
    err = cli_error(capsys, "train", "--dataset", str(dataset), "--out", str(dataset))
    assert f"--out {dataset} holds a dataset (diffplan collect)" in err
    assert "choose another --out" in err
    assert snapshot(dataset) == before


def test_collect_overwrite_refuses_a_training_run(capsys, run: Path, tmp_path: Path) -> None:
    before = snapshot(run)
    err = cli_error(capsys, "collect", "--out", str(run), "--overwrite", "--steps", "10")
    assert f"--out {run} holds the output of `diffplan train`" in err
    assert "choose another --out" in err
    assert snapshot(run) == before


def test_evaluate_refuses_a_training_run(capsys, run: Path) -> None:
    before = snapshot(run)
    err = cli_error(capsys, "evaluate", "--diffusion", str(run), "--out", str(run), "--overwrite")
    assert f"--out {run} holds the output of `diffplan train`, not the output of" in err
    assert snapshot(run) == before


def test_same_kind_needs_overwrite(capsys, dataset: Path, tmp_path: Path) -> None:
    err = cli_error(capsys, "collect", "--out", str(dataset), "--steps", "10")
    assert f"--out {dataset} already holds the output of `diffplan collect`" in err
    assert "pass --overwrite" in err
    evaluation = tmp_path / "evaluation"
    with output_folder(evaluation, "evaluate"):
        pass
    err = cli_error(capsys, "evaluate", "--diffusion", "x", "--out", str(evaluation))
    assert "already holds the output of `diffplan evaluate`; pass --overwrite" in err


def test_foreign_files_are_refused(capsys, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    err = cli_error(capsys, "train", "--dataset", "x", "--out", str(tmp_path))
    assert f"--out {tmp_path} holds files that diffplan did not write" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_the_old_outputs(tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    with output_folder(out, "evaluate"):
        (out / "rollout.gif").write_bytes(b"old")
        (out / "figures").mkdir()
    with output_folder(out, "evaluate", existing="replace"):
        assert sorted(p.name for p in out.iterdir()) == [MARKER]
    with pytest.raises(FileExistsError, match="pass --overwrite"), output_folder(out, "evaluate"):
        pass


def test_a_command_that_fails_before_writing_leaves_no_folder(capsys, tmp_path: Path) -> None:
    out = tmp_path / "e"
    err = cli_error(capsys, "evaluate", "--diffusion", str(tmp_path / "missing"), "--out", str(out))
    assert str(tmp_path / "missing") in err
    assert not out.exists()
    assert not any(tmp_path.iterdir())  # no lock either
