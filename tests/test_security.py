"""No code runs from a file unless the user says so: a crafted SB3 zip whose pickle would
create a marker file, and env ids read from files that name a module."""

from __future__ import annotations

import base64
import contextlib
import json
import pickle
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
from test_errors_agents import TQC_ZIP, collect, needs_shared, rewrite_zip
from test_errors_checkpoints import edit_json, run_cli, write_checkpoint

from diffplan.agents import load_agent


class Touch:
    """Unpickling this creates ``path`` (what a hostile file could do instead)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


def crafted_zip(tmp_path: Path, marker: Path) -> Path:
    """The TQC Walker2d zip with a pickle in ``data`` that SB3's load would run."""
    with zipfile.ZipFile(TQC_ZIP) as archive:
        data = json.loads(archive.read("data"))
    payload = base64.b64encode(pickle.dumps(Touch(marker))).decode()
    data["action_noise"] = {":type:": "<class 'x'>", ":serialized:": payload}
    return rewrite_zip(TQC_ZIP, tmp_path / "Walker2d-v3.zip", data=json.dumps(data).encode())


@needs_shared
def test_sb3_loader_needs_the_trust_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    marker = tmp_path / "marker"
    agent = crafted_zip(tmp_path, marker)
    err = run_cli(collect(agent, tmp_path, "--loader", "sb3"), capsys)
    assert not marker.exists()
    assert str(agent) in err and "runs any code" in err and "--trust-agent-file" in err
    load_agent(agent, gym.make("Walker2d-v5"))  # the safe loader reads it without running it
    assert not marker.exists()


@needs_shared
def test_trusted_sb3_load_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """With --trust-agent-file the file's code runs (SB3's own load), after a warning."""
    pytest.importorskip("sb3_contrib")
    marker = tmp_path / "marker"
    agent = crafted_zip(tmp_path, marker)
    with contextlib.suppress(Exception):  # what SB3 makes of the payload does not matter
        load_agent(agent, gym.make("Walker2d-v5"), "sb3", trust=True)
    assert marker.exists()
    assert "warning" in capsys.readouterr().err


def test_env_id_from_a_file_never_imports_a_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """``gym.make("this:Walker2d-v5")`` would import ``this``; read from a checkpoint it is refused
    before anything is made."""
    checkpoint = write_checkpoint(tmp_path / "run")
    edit_json("dataset.json", lambda d: d.update(env_id="this:Walker2d-v5"))(checkpoint)
    sys.modules.pop("this", None)
    args = ["evaluate", "--diffusion", str(checkpoint), "--out", str(tmp_path / "eval")]
    err = run_cli(args, capsys)
    assert "this" not in sys.modules
    assert "dataset.json" in err and "plain registered ids" in err
