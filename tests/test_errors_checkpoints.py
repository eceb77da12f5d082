"""Corrupt or edited checkpoints: `diffplan evaluate --diffusion` refuses each with one line
(exit 2, no traceback) naming the file and what to do; env ids from files import nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from diffplan.checkpoints import store as ckpt
from diffplan.cli import main
from diffplan.data.normalizers import Normalizer
from diffplan.models import TemporalUnet

OBS, ACT, HORIZON = 17, 6, 8
ARCHITECTURE = {
    "network": "TemporalUnet",
    "horizon": HORIZON,
    "transition_dim": OBS + ACT,
    "dim": 8,
    "dim_mults": [1, 2],
    "attention": False,
}
DATASET = {
    "env_id": "Walker2d-v5",
    "obs_dim": OBS,
    "act_dim": ACT,
    "num_episodes": 1,
    "num_steps": 10,
    "mean_return": 1.0,
    "v_rate": 0.1,
    "ref_min_score": None,
    "ref_max_score": None,
    "source": {},
}


def write_checkpoint(run: Path) -> Path:
    """A valid untrained diffusion checkpoint ``run/checkpoints/step_000000001``."""
    kwargs = {k: v for k, v in ARCHITECTURE.items() if k != "network"}
    model = TemporalUnet(**kwargs)
    meta = ckpt.CheckpointMeta(
        kind="diffusion",
        architecture=ARCHITECTURE,
        fingerprint={"windows": {"horizon": HORIZON}},
        config=dict(diffusion_steps=5, schedule="cosine", prediction="x0", clip_sample=None),
        normalizer=Normalizer("gaussian", np.zeros(OBS + ACT), np.ones(OBS + ACT)),
        dataset=DATASET,
    )
    optimizer = torch.optim.Adam(model.parameters())
    directory = run / "checkpoints" / "step_000000001"
    ckpt.save_checkpoint(directory, step=1, model=model, ema=model, optimizer=optimizer, meta=meta)
    return directory


def edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(checkpoint: Path) -> None:
        data = json.loads((checkpoint / name).read_text())
        result = change(data)
        (checkpoint / name).write_text(json.dumps(data if result is None else result))

    return edit


def write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda checkpoint: (checkpoint / "ema.safetensors").write_bytes(data)


def truncate(checkpoint: Path) -> None:
    file = checkpoint / "ema.safetensors"
    file.write_bytes(file.read_bytes()[:200])


def nan_weights(checkpoint: Path) -> None:
    state = load_file(str(checkpoint / "ema.safetensors"))
    next(iter(state.values())).fill_(float("nan"))
    save_file(state, str(checkpoint / "ema.safetensors"))


def relabel_value(checkpoint: Path) -> None:
    """A value network's architecture under kind 'diffusion'."""
    header = json.loads((checkpoint / "config.json").read_text())
    header["architecture"] = {"network": "ValueNetwork", "horizon": HORIZON, "transition_dim": 23}
    (checkpoint / "config.json").write_text(json.dumps(header))


CASES = {
    # name: (edit, words the one-line message must hold)
    "truncated safetensors": (truncate, ["ema.safetensors", "corrupt"]),
    "garbage safetensors": (write_bytes(b"\x13garbage" * 40), ["ema.safetensors", "corrupt"]),
    "empty safetensors": (write_bytes(b""), ["ema.safetensors", "corrupt"]),
    "huge header": (write_bytes((2**62).to_bytes(8, "little") + b"{}"), ["ema.safetensors"]),
    "NaN weights": (nan_weights, ["ema.safetensors", "non-finite"]),
    "config a list": (edit_json("config.json", lambda h: [h]), ["config.json", "object"]),
    "no kind": (edit_json("config.json", lambda h: h.pop("kind") and None), ["missing kind"]),
    "unknown kind": (edit_json("config.json", lambda h: h.update(kind="x")), ["holds x"]),
    "unknown key": (
        edit_json("config.json", lambda h: h["architecture"].update(colour=1)),
        ["config.json", "colour"],
    ),
    "absurd size": (
        edit_json("config.json", lambda h: h["architecture"].update(dim=2**20)),
        ["config.json", "parameters"],
    ),
    "value relabelled": (relabel_value, ["config.json", "ValueNetwork"]),
    "horizon edited": (
        edit_json("config.json", lambda h: h["architecture"].update(horizon=16)),
        ["config.json", "horizon 16"],
    ),
    "no prediction": (
        edit_json("config.json", lambda h: h["config"].pop("prediction") and None),
        ["config.json", "prediction"],
    ),
    "dataset field missing": (
        edit_json("dataset.json", lambda d: d.pop("v_rate") and None),
        ["dataset.json", "v_rate"],
    ),
    "dataset field extra": (
        edit_json("dataset.json", lambda d: d.update(colour=1)),
        ["dataset.json", "colour"],
    ),
    "env of other dims": (
        edit_json("dataset.json", lambda d: d.update(env_id="Hopper-v5")),
        ["cannot plan in Hopper-v5 (obs (11,)", "obs 17"],
    ),
    "unknown env": (
        edit_json("dataset.json", lambda d: d.update(env_id="NoSuchEnv-v0")),
        ["dataset.json", "NoSuchEnv-v0", "not a registered"],
    ),
    "normaliser length": (
        edit_json("normalizer.json", lambda n: n.update(shift=[0.0] * 5, scale=[1.0] * 5)),
        ["normalizer.json", "5 entries"],
    ),
    "normaliser not finite": (
        edit_json("normalizer.json", lambda n: n["scale"].__setitem__(0, float("inf"))),
        ["normalizer.json", "finite"],
    ),
    "normaliser absurd": (
        edit_json("normalizer.json", lambda n: n["scale"].__setitem__(0, 6e36)),
        ["normalizer.json", "overflow"],
    ),
    "config not JSON": (
        lambda c: (c / "config.json").write_text("{kind: diffusion"),
        ["config.json", "not valid JSON"],
    ),
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process; returns stderr after asserting exit 2 and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and err.startswith("diffplan: error: "), err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_refuses_bad_checkpoint(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, words = CASES[case]
    edit(write_checkpoint(tmp_path / "run"))
    args = ["evaluate", "--diffusion", str(tmp_path / "run"), "--out", str(tmp_path / "eval")]
    err = run_cli([*args, "--episodes", "1", "--threads", "1"], capsys)
    for word in words:
        assert word in err, (word, err)


def test_train_resume_refuses_corrupt_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --resume` on a run whose weights were truncated, then whose trainer state holds
    a pickled object: one line each."""
    from test_training import toy_dynamics_dataset

    from diffplan.data.minari_format import write_minari_dir

    data = write_minari_dir(toy_dynamics_dataset(), tmp_path / "toy")
    args = ["train", "--dataset", str(data), "--out", str(tmp_path / "run"), "--no-progress",
            "--threads", "1", "--model.dim", "8", "--model.dim-mults", "1", "2",
            "--optim.steps", "2"]  # fmt: skip
    main(args)
    (checkpoint,) = ckpt.checkpoints(tmp_path / "run")
    whole = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(whole[:100])
    resume = [*args[:-1], "4", "--resume"]
    assert "model.safetensors: not a readable safetensors file" in run_cli(resume, capsys)
    (checkpoint / "model.safetensors").write_bytes(whole)
    torch.save({"step": 2, "thing": Path("x")}, checkpoint / "trainer_state.pt")
    assert "trainer_state.pt contains pickled code" in run_cli(resume, capsys)
