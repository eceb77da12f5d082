"""``diffplan evaluate`` on tiny networks trained for a few steps: every artifact is written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_dataset

from diffplan.cli import main
from diffplan.data import TrajectoryDataset
from diffplan.data.minari_format import write_minari_dir
from diffplan.diffusion import SamplerConfig
from diffplan.evaluation.evaluate import EvaluateConfig, evaluate
from diffplan.planning import ExperimentalPlanning, GuideConfig, PlanningConfig, WarmStart
from diffplan.training import (
    OptimConfig,
    TrainConfig,
    TrainDynamicsConfig,
    TrainValueConfig,
    train,
    train_dynamics,
    train_value,
)
from diffplan.training.config import DynamicsNetConfig, UNetConfig, ValueNetConfig


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Walker2d-shaped random dataset and diffusion/value runs of 4 steps each."""
    root = tmp_path_factory.mktemp("tiny")
    random_walker = synthetic_dataset(lengths=(30, 30, 30), obs_dim=17, act_dim=6)
    dataset = TrajectoryDataset(list(random_walker), env_id="Walker2d-v5", name="random-walker")
    write_minari_dir(dataset, root / "data")
    optim = OptimConfig(steps=4, batch_size=8, save_every=4, ema_start=2, ema_every=1)
    common = {
        "dataset": str(root / "data"),
        "progress": False,
        "threads": 1,
        "diffusion_steps": 5,
        "optim": optim,
    }
    train(TrainConfig(out=root / "diffusion", model=UNetConfig(dim=8, dim_mults=(1, 2)), **common))
    train_value(
        TrainValueConfig(
            out=root / "value", model=ValueNetConfig(dim=8, dim_mults=(1, 2), hidden=16), **common
        )
    )
    return root / "diffusion", root / "value"


def test_evaluate_writes_every_artifact(tiny_runs, tmp_path):
    diffusion, value = tiny_runs
    out = tmp_path / "eval"
    results = evaluate(
        EvaluateConfig(
            diffusion=diffusion,
            value=value,
            out=out,
            windows=(1, 7),
            episodes=2,
            planning=PlanningConfig(candidates=3, guide=GuideConfig(n_guide_steps=1)),
            threads=1,
            progress=False,
        )
    )
    assert [r.label for r in results] == ["k=1", "k=7", "k=7 guided"]
    for name in (
        "metrics.csv",
        "metrics.json",
        "episodes.csv",
        "report.md",
        "scores.png",
        "episodes.png",
        "config.json",
    ):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert [row["label"] for row in rows] == ["k=1", "k=7", "k=7 guided"]
    episodes = list(csv.DictReader((out / "episodes.csv").read_text().splitlines()))
    assert len(episodes) == 6 and {e["seed"] for e in episodes} == {"0", "1"}
    for result in results:  # the metrics summarise exactly the episodes listed
        returns = [e.total_return for e in result.episodes]
        assert result.metrics.mean_return == pytest.approx(np.mean(returns))
    report = (out / "report.md").read_text()
    assert "| custom | 7 | yes | 2 |" in report and "% of data" in report
    document = json.loads((out / "results.json").read_text())
    assert [(s["k"], s["guided"], s["seeds"]) for s in document["settings"]] == [
        (1, False, [0, 1]),
        (7, False, [0, 1]),
        (7, True, [0, 1]),
    ]
    assert document["checkpoint_step"] > 0 and document["config"]["episodes"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["env_id"] == "Walker2d-v5" and config["horizon"] == 8
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_guided_windows_alone_run_only_the_guided_settings(tiny_runs, tmp_path):
    diffusion, value = tiny_runs
    guided_only = EvaluateConfig(
        diffusion=diffusion,
        value=value,
        out=tmp_path / "guided",
        guided_windows=(2,),
        episodes=1,
        planning=PlanningConfig(candidates=2, guide=GuideConfig(n_guide_steps=1)),
        threads=1,
        progress=False,
    )
    assert [r.label for r in evaluate(guided_only)] == ["k=2 guided"]
    with_sweep = replace(guided_only, out=tmp_path / "both", windows=(1,))
    assert [r.label for r in evaluate(with_sweep)] == ["k=1", "k=2 guided"]


def test_evaluate_refuses_bad_options(tiny_runs, tmp_path):
    diffusion, value = tiny_runs
    with pytest.raises(ValueError, match="needs --value"):
        evaluate(
            EvaluateConfig(diffusion=diffusion, out=tmp_path, guided_windows=(7,), progress=False)
        )
    with pytest.raises(ValueError, match=r"effective window must be in 1\.\.7"):
        evaluate(
            EvaluateConfig(
                diffusion=diffusion,
                out=tmp_path,
                windows=(8,),
                episodes=1,
                progress=False,
                overwrite=True,  # the evaluation that stopped
            )
        )
    with pytest.raises(ValueError, match="holds a value network, not a diffusion model"):
        evaluate(EvaluateConfig(diffusion=value, out=tmp_path, progress=False, overwrite=True))


def test_evaluate_runs_the_fast_planner_options(tiny_runs, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    diffusion, _ = tiny_runs
    planning = PlanningConfig(
        sampler=SamplerConfig("dpm-solver++", 3),
        backend="onnx",
        experimental=ExperimentalPlanning(warm_start=WarmStart(2, 1)),
    )
    config = EvaluateConfig(
        diffusion=diffusion,
        out=tmp_path / "fast",
        windows=(2,),
        episodes=2,
        planning=planning,
        threads=1,
        progress=False,
        video=True,
    )
    (result,) = evaluate(config)
    # the video is written, or skipped with a reason where this process has no offscreen GL
    printed = capsys.readouterr().out
    assert (tmp_path / "fast" / "rollout.gif").exists() != ("video skipped" in printed)
    assert result.metrics.episodes == 2 and all(e.length > 0 for e in result.episodes)
    header = (tmp_path / "fast" / "report.md").read_text()
    assert "Sampler dpm-solver++, 3 steps, onnx backend, warm start from step 2" in header
    saved = json.loads((tmp_path / "fast" / "config.json").read_text())
    assert saved["config"]["planning"]["sampler"]["method"] == "dpm-solver++"


def test_evaluate_with_dynamics_models(tiny_runs, tmp_path):
    diffusion, _ = tiny_runs
    data = diffusion.parent / "data"
    runs = {}
    for kind in ("inverse", "forward"):
        runs[kind] = tmp_path / kind
        train_dynamics(
            TrainDynamicsConfig(
                dataset=str(data),
                kind=kind,
                out=runs[kind],
                progress=False,
                threads=1,
                model=DynamicsNetConfig(hidden=16, layers=1),
                optim=OptimConfig(steps=4, batch_size=8, save_every=4, ema_start=2),
            )
        )
    out = tmp_path / "eval"
    planning = PlanningConfig(track_states=True, candidates=3)
    (result,) = evaluate(
        EvaluateConfig(
            diffusion=diffusion,
            out=out,
            dynamics=runs["forward"],
            inverse_dynamics=runs["inverse"],
            windows=(3,),
            episodes=2,
            planning=planning,
            threads=1,
            progress=False,
        )
    )
    assert result.metrics.episodes == 2 and all(e.length > 0 for e in result.episodes)
    header = (out / "report.md").read_text()
    assert "3 per unguided decision" in header
    assert "each from the real state and the next planned state" in header
    with pytest.raises(ValueError, match="holds a forward dynamics model, not an inverse"):
        evaluate(
            EvaluateConfig(
                diffusion=diffusion,
                out=out,
                inverse_dynamics=runs["forward"],
                progress=False,
                overwrite=True,
            )
        )


VIDEO_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from diffplan.evaluation.video import record_episode

class Still:
    def reset(self, num_envs): pass
    def act(self, observations, env_ids): return np.zeros((len(env_ids), 6), np.float32)

path = record_episode(Still(), "Walker2d-v5", 0, Path(sys.argv[1]), every=50)
print("written" if path else "none")
"""


def _record(tmp_path, gl: str) -> tuple[str, Path]:
    out = tmp_path / f"{gl}.gif"
    env = {**os.environ, "MUJOCO_GL": gl}
    result = subprocess.run(
        [sys.executable, "-c", VIDEO_SCRIPT, str(out)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, out


def test_video_is_a_gif_of_the_episode_where_egl_renders(tmp_path):
    stdout, out = _record(tmp_path, "egl")
    if "video skipped" in stdout:
        pytest.skip(f"no EGL offscreen rendering here: {stdout.strip()}")
    from PIL import Image

    with Image.open(out) as gif:
        assert gif.n_frames > 2 and gif.size == (320, 240)


def test_video_without_gl_is_skipped_with_advice(tmp_path):
    stdout, out = _record(tmp_path, "glfw" if not os.environ.get("DISPLAY") else "invalid")
    assert "video skipped" in stdout and "MUJOCO_GL=egl" in stdout and stdout.endswith("none\n")
    assert not out.exists()


def test_a_preset_names_its_settings_in_results_json(tiny_runs, tmp_path):
    diffusion, _ = tiny_runs
    out = tmp_path / "fast"
    args = ["evaluate", "--diffusion", str(diffusion), "--out", str(out), "--planner", "fast"]
    main([*args, "--windows", "1", "--episodes", "1", "--threads", "1", "--no-progress"])
    document = json.loads((out / "results.json").read_text())
    assert [s["preset"] for s in document["settings"]] == ["fast"]
    assert document["config"]["preset"] == "fast"
