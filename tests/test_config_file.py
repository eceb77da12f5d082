"""``--config FILE``: YAML or a saved config.json as a command's defaults; flags override."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import tyro

from diffplan.config_file import apply_config_file
from diffplan.evaluation.evaluate import EvaluateConfig, config_record
from diffplan.run import RunConfig
from diffplan.training import TrainConfig, TrainDynamicsConfig, TrainValueConfig
from diffplan.training.config import OptimConfig, UNetConfig


def parse(cls: type, args: list[str]):
    return tyro.cli(cls, args=apply_config_file(args, cls))


def test_yaml_values_are_defaults_that_flags_override(tmp_path: Path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "dataset: data/walker\noptim:\n  steps: 7\n  batch-size: 16\n"
        "  grad_clip: null\nmodel:\n  dim_mults: [1, 2]\nprogress: false\n"
    )
    config = parse(TrainConfig, ["--config", str(path), "--optim.steps", "9"])
    assert config.dataset == "data/walker" and config.optim.steps == 9
    assert config.optim.batch_size == 16 and config.model.dim_mults == (1, 2)
    assert config.progress is False and config.optim.lr == 6e-4  # untouched: the default
    assert parse(TrainConfig, [f"--config={path}"]).optim.steps == 7


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(
            dataset="d",
            out=Path("r"),
            optim=OptimConfig(steps=5, grad_clip=1.0),
            model=UNetConfig(dim=16, attention=True),
            progress=False,
        ),
        EvaluateConfig(diffusion=Path("runs/x"), windows=(1, 3), episodes=4, value=None),
        RunConfig(quick=True, horizon=16, dim_mults=(1, 2)),
    ],
    ids=["train", "evaluate", "run"],
)
def test_a_saved_config_json_replays_the_run(tmp_path: Path, config):
    saved = {"config": config_record(config), "git_revision": "abc", "device": "cpu"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    assert asdict(parse(type(config), ["--config", str(path)])) == asdict(config)


def test_main_job_defaults():
    train, value = TrainConfig(dataset="d"), TrainValueConfig(dataset="d")
    assert (train.optim.steps, train.optim.batch_size, train.optim.lr) == (20_000, 64, 6e-4)
    assert train.optim.ema_start == 2000 and train.model.dim_mults == (1, 2, 4)
    assert train.windows.horizon == 8 and value.optim.steps == 10_000
    assert value.model.dim_mults == (1, 2, 4) and TrainDynamicsConfig("d").optim.steps == 10_000
    assert TrainConfig(dataset="d").optim is not train.optim  # no shared mutable default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optim:\n  stepz: 3\n", "unknown option optim.stepz; valid keys of optim: batch_size"),
        ("bogus: 1\n", "unknown option bogus; valid keys: action_weight"),
        ("optim: 3\n", "optim must be a mapping"),
        ("- 1\n- 2\n", "expected a mapping of option names to values, got list"),
        ("a: [\n", "not YAML or JSON"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "diffplan", "train", "--config", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"diffplan: error: --config {path}: ")
    assert message in done.stderr


def test_missing_config_file_and_missing_argument(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        apply_config_file(["--config", str(tmp_path / "none.yaml")], TrainConfig)
    with pytest.raises(ValueError, match="needs a file"):
        apply_config_file(["--config"], TrainConfig)
