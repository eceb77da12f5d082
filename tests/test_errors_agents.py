"""Malformed agents given to `diffplan collect --agent`: diffplan agent directories and
stable-baselines3 zips; each refused with one line (exit 2, no traceback) naming the file."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from test_errors_checkpoints import run_cli

from diffplan.agents import PACKAGED_WALKER2D_AGENT

TQC_ZIP = SHARED / "data" / "walker2d-agents" / "tqc-Walker2d-v3" / "Walker2d-v3.zip"
CHEETAH_ZIP = SHARED / "data" / "mujoco-agents" / "tqc-HalfCheetah-v3" / "HalfCheetah-v3.zip"
needs_shared = pytest.mark.skipif(not TQC_ZIP.is_file(), reason=f"{TQC_ZIP} absent (../shared)")


def collect(agent: Path, tmp_path: Path, *extra: str) -> list[str]:
    out = str(tmp_path / "data")
    return ["collect", "--agent", str(agent), "--out", out, "--steps", "5", "--num-envs", "1",
            "--no-progress", *extra]  # fmt: skip


def edit_spec(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        spec = json.loads((directory / "agent.json").read_text())
        change(spec)
        (directory / "agent.json").write_text(json.dumps(spec))

    return edit


def swap_bounds(spec: dict) -> None:
    spec["action_low"], spec["action_high"] = spec["action_high"], spec["action_low"]


DIRECTORY_CASES = {
    "hidden 1e12": (edit_spec(lambda s: s.update(hidden=[10**12])), "hidden"),
    "hidden 2**31": (edit_spec(lambda s: s.update(hidden=[2**31, 2**31])), "hidden"),
    "hidden too many weights": (edit_spec(lambda s: s.update(hidden=[60000] * 3)), "weights"),
    "hidden negative": (edit_spec(lambda s: s.update(hidden=[-4])), "hidden"),
    "hidden a string": (edit_spec(lambda s: s.update(hidden="256")), "hidden"),
    "obs_dim negative": (edit_spec(lambda s: s.update(obs_dim=-17)), "obs_dim"),
    "unknown activation": (edit_spec(lambda s: s.update(activation="os system")), "activation"),
    "swapped bounds": (edit_spec(swap_bounds), "swapped"),
    "missing field": (edit_spec(lambda s: s.pop("obs_var")), "missing obs_var"),
    "extra field": (edit_spec(lambda s: s.update(colour=1)), "unknown keys colour"),
    "module env id": (edit_spec(lambda s: s.update(env_id="this:Walker2d-v5")), "plain registered"),
    "unknown env id": (edit_spec(lambda s: s.update(env_id="NoSuch-v0")), "not a registered"),
    "other task": (edit_spec(lambda s: s.update(env_id="HalfCheetah-v5")), "--force-env"),
    "corrupt weights": (
        lambda d: (d / "policy.safetensors").write_bytes(b"\x00" * 9),
        "policy.safetensors",
    ),
    "not JSON": (lambda d: (d / "agent.json").write_text("[1, 2"), "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(DIRECTORY_CASES))
def test_collect_refuses_bad_agent_directory(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, words = DIRECTORY_CASES[case]
    agent = tmp_path / "agent"
    shutil.copytree(PACKAGED_WALKER2D_AGENT, agent)
    edit(agent)
    err = run_cli(collect(agent, tmp_path), capsys)
    assert str(agent) in err and words in err, err


def rewrite_zip(source: Path, target: Path, **members: bytes) -> Path:
    """``source`` with some members replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, members.get(name, old.read(name)))
    return target


def edit_data(change: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    def edit(source: Path, target: Path) -> Path:
        with zipfile.ZipFile(source) as archive:
            data = json.loads(archive.read("data"))
        result = change(data)
        text = json.dumps(data if result is None else result)
        return rewrite_zip(source, target, data=text.encode())

    return edit


def edit_policy(change: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    def edit(source: Path, target: Path) -> Path:
        with zipfile.ZipFile(source) as archive:
            state = torch.load(io.BytesIO(archive.read("policy.pth")), "cpu", weights_only=True)
        buffer = io.BytesIO()
        result = change(state)
        torch.save(state if result is None else result, buffer)
        return rewrite_zip(source, target, **{"policy.pth": buffer.getvalue()})

    return edit


def pickled_object(source: Path, target: Path) -> Path:
    buffer = io.BytesIO()
    torch.save({"actor.mu.weight": Path("x")}, buffer)
    return rewrite_zip(source, target, **{"policy.pth": buffer.getvalue()})


ZIP_CASES = {
    "data a list": (edit_data(lambda d: [d]), "expected a JSON object"),
    "policy_class a string": (edit_data(lambda d: d.update(policy_class="TQC")), "policy_class"),
    "activation_fn a string": (
        edit_data(lambda d: d["policy_kwargs"].update(activation_fn="ReLU")),
        "activation_fn",
    ),
    "no latent_pi.0": (
        edit_policy(lambda s: {k: v for k, v in s.items() if "latent_pi.0" not in k}),
        "latent_pi.0",
    ),
    "wrong mu shape": (
        edit_policy(lambda s: s.update({"actor.mu.weight": torch.zeros(6, 7)})),
        "inconsistent",
    ),
    "bare tensor": (edit_policy(lambda s: torch.zeros(3)), "not a dict of named tensors"),
    "pickled code": (pickled_object, "contains pickled code"),
}


@needs_shared
@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_collect_refuses_bad_sb3_zip(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, words = ZIP_CASES[case]
    agent = make(TQC_ZIP, tmp_path / "Walker2d-v3.zip")
    err = run_cli(collect(agent, tmp_path), capsys)
    assert str(agent) in err and words in err, err


@pytest.mark.skipif(not CHEETAH_ZIP.is_file(), reason=f"{CHEETAH_ZIP} absent (../shared)")
def test_agent_of_another_task_is_refused_even_when_dims_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HalfCheetah's and Walker2d's dims are both 17/6: the task family decides."""
    err = run_cli(collect(CHEETAH_ZIP, tmp_path, "--env", "Walker2d-v5"), capsys)
    assert "trained on HalfCheetah-v3, not a version of Walker2d-v5" in err
    assert "--force-env" in err
