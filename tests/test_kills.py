"""kill -9 at any point of ``train`` and ``collect``: after a restart no temporary is left and
every checkpoint under a final name loads."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import synthetic_dataset
from test_locks import ENV, EXE, train_args

from diffplan.checkpoints import build_network
from diffplan.checkpoints.store import checkpoints, load_trainer_state, load_weights, read_meta
from diffplan.data.minari_format import write_minari_dir
from diffplan.data.sources import load_dataset
from diffplan.outputs import lock_path

LEFTOVER = re.compile(r"^\..*\.(tmp|old|lock)$")


def leftovers(root: Path) -> list[Path]:
    """Hidden temporaries and locks anywhere under ``root``."""
    return [p for p in root.rglob(".*") if LEFTOVER.match(p.name)]


def assert_loadable(run: Path) -> None:
    for checkpoint in checkpoints(run):
        network = build_network(read_meta(checkpoint).architecture)
        load_weights(checkpoint, network, "model")
        load_weights(checkpoint, network, "ema")
        assert load_trainer_state(checkpoint)["step"] == int(checkpoint.name.split("_")[1])


def kill_after(args: list[str], path: Path, delay: float) -> None:
    """Start ``args``, wait until ``path`` exists, kill -9 it ``delay`` seconds later."""
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, err.decode()


@pytest.mark.slow  # six diffplan processes: 90 s on 2 busy cores
def test_kill_9_during_training_and_a_restart(tmp_path: Path) -> None:
    dataset = write_minari_dir(synthetic_dataset(lengths=(20, 30)), tmp_path / "ds")
    run = tmp_path / "run"
    # every step saves a checkpoint and prunes one: kills land in saves and prunes
    args = [*train_args(dataset, run, 10**6), "--optim.save-every", "1"]
    args += ["--optim.keep-checkpoints", "2", "--optim.log-every", "1"]
    seen = []
    kill_after(args, lock_path(run), 0.0)  # before any checkpoint
    # then at several points after the checkpoint 3 steps past the latest is written
    for delay in (0.0, 0.01, 0.03, 0.1):
        step = int(checkpoints(run)[-1].name.split("_")[1]) if checkpoints(run) else 0
        resume = ["--resume"] if step else []
        kill_after(args + resume, run / "checkpoints" / f"step_{step + 3:09d}", delay)
        seen += leftovers(tmp_path)
        assert_loadable(run)  # what a kill leaves under final names loads
    # a killed writer's temporary is always cleaned, whether or not a kill left one
    (run / "checkpoints" / ".step_000000001.abcd1234.tmp").mkdir()
    step = int(checkpoints(run)[-1].name.split("_")[1])
    finish = [*train_args(dataset, run, step + 2), "--optim.save-every", "1", "--resume"]
    done = subprocess.run(finish, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "taking over the lock" in done.stderr  # kill -9 left its lock
    assert leftovers(tmp_path) == []
    assert_loadable(run)
    assert [c.name for c in checkpoints(run)][-1] == f"step_{step + 2:09d}"
    print(f"temporaries and locks left by the kills: {sorted({p.name for p in seen})}")


def test_kill_9_during_collect_and_a_restart(tmp_path: Path) -> None:
    out = tmp_path / "data"
    collect = [EXE, "collect", "--out", str(out), "--no-progress", "--overwrite"]
    # a budget it cannot finish before the kill (3,000 steps could, on a quiet machine)
    kill_after([*collect, "--steps", str(10**6)], lock_path(out), 2.0)
    (tmp_path / ".data.abcd1234.tmp").mkdir()  # as a kill while writing leaves it
    done = subprocess.run(
        [*collect, "--steps", "30"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path) == []
    assert load_dataset(str(out)).info.num_steps == 30
