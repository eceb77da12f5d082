"""One writer per output folder: a second one is refused at once with the first one's pid; a
dead writer's lock is taken over; the lock goes with the command, errors included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import synthetic_dataset

from diffplan.data.minari_format import write_minari_dir
from diffplan.outputs import folder_lock, lock_path, output_folder

EXE = str(Path(sys.executable).parent / "diffplan")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_args(dataset: Path, out: Path, steps: int) -> list[str]:
    return [
        EXE,
        "train",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        "--model.dim",
        "8",
        "--model.dim-mults",
        "1",
        "2",
        "--diffusion-steps",
        "5",
        "--optim.steps",
        str(steps),
        "--optim.batch-size",
        "4",
        "--optim.save-every",
        "1000000",
    ]


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until ``path`` exists (the process holds its lock)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_second_writer_is_refused_at_once_and_a_dead_ones_lock_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_minari_dir(synthetic_dataset(lengths=(20, 30)), tmp_path / "ds")
    out = tmp_path / "run"
    first = subprocess.Popen(
        train_args(dataset, out, 10**7), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lock_path(out), first)
        assert json.loads(lock_path(out).read_text())["pid"] == first.pid
        second = subprocess.run(
            train_args(dataset, out, 2), env=ENV, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2
        assert "Traceback" not in second.stderr
        assert f"{out} is being written by pid {first.pid}" in second.stderr
        assert "wait for it to finish or choose another output folder" in second.stderr
        assert first.poll() is None  # the first writer goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert lock_path(out).exists()  # kill -9 leaves the lock behind ...
    with output_folder(out, "train", existing="reuse"):  # ... which the next start takes over
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {first.pid}" in capsys.readouterr().err
    assert not lock_path(out).exists()


def test_lock_is_released_on_errors(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), folder_lock(out, "evaluate"):
        assert lock_path(out).exists()
        raise RuntimeError("boom")
    assert not lock_path(out).exists()
    held = pytest.raises(FileExistsError, match=f"written by pid {os.getpid()}")
    with folder_lock(out, "evaluate"), held, folder_lock(out, "evaluate"):
        pass
