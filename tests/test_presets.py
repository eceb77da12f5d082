"""Planner presets: kept as data, picked by --planner, overridden by single options."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli_error

from diffplan.cli import main
from diffplan.evaluation.evaluate import EvaluateConfig, _preset_ensemble_within
from diffplan.planning.presets import apply_planner_flag, find_preset, presets, within_task


def test_every_preset_builds_a_planning_config() -> None:
    assert {"tracked", "report", "fast"} <= set(presets())
    report = find_preset("report").config()
    assert (report.sampler.method, report.sampler.steps, report.track_states) == ("ddpm", 20, False)
    tracked = find_preset("tracked").config()
    assert tracked.track_states and tracked.temporal_ensemble == 7 and tracked.candidates == 8
    assert find_preset("fast").config().sampler.steps == 5


def test_a_presets_ensemble_is_cut_to_what_the_horizon_and_the_task_allow() -> None:
    tracked = find_preset("tracked").config()
    assert within_task(tracked, 8, "Walker2d-v5").temporal_ensemble == 7
    assert within_task(tracked, 4, "Walker2d-v5").temporal_ensemble == 3  # H - 1 cover a step
    assert within_task(tracked, 4, None).temporal_ensemble == 3  # a task not in the table
    assert within_task(tracked, 8, "HalfCheetah-v5").temporal_ensemble == 1  # its table's cap
    config = EvaluateConfig(diffusion=Path("run/diffusion"), planning=tracked, preset="tracked")
    assert _preset_ensemble_within(config, 8, "Walker2d-v5").planning.temporal_ensemble == 7
    assert _preset_ensemble_within(config, 8, "Hopper-v5").planning.temporal_ensemble == 7
    # tasks.json: HalfCheetah's fast gait loses to averaging plans
    assert _preset_ensemble_within(config, 4, "HalfCheetah-v5").planning.temporal_ensemble == 1
    by_hand = EvaluateConfig(diffusion=Path("run/diffusion"), planning=tracked)
    assert _preset_ensemble_within(by_hand, 4, "HalfCheetah-v5").planning.temporal_ensemble == 7


def test_single_options_override_the_preset() -> None:
    name, args = apply_planner_flag(["--planner", "fast", "--planning.sampler.steps", "3"])
    assert name == "fast"
    # tyro keeps the last of repeated flags: the command line's come after the preset's
    assert args[-2:] == ["--planning.sampler.steps", "3"]
    assert args.index("--planning.sampler.steps") < len(args) - 2


def test_list_planners_prints_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    main(["evaluate", "--list-planners"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(presets())


def test_unknown_preset_and_missing_models_are_refused(capsys, tmp_path) -> None:
    message = cli_error(capsys, "evaluate", "--diffusion", str(tmp_path), "--planner", "best")
    assert "'best'" in message and "tracked" in message
    message = cli_error(capsys, "evaluate", "--diffusion", str(tmp_path), "--planner", "tracked")
    assert "--inverse-dynamics" in message and "train-dynamics --kind inverse" in message
