"""``diffplan select-checkpoint``: every checkpoint evaluated alike, the rule, reuse, errors."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import synthetic_dataset

from diffplan.atomic import write_json
from diffplan.cli import main
from diffplan.data import TrajectoryDataset
from diffplan.data.minari_format import write_minari_dir
from diffplan.evaluation import selection
from diffplan.evaluation.evaluate import EvaluateConfig, config_record
from diffplan.evaluation.selection import SelectCheckpointConfig, select_checkpoint
from diffplan.training import OptimConfig, TrainConfig, train
from diffplan.training.config import UNetConfig


@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Walker2d-shaped diffusion run with checkpoints at steps 2, 4 and 6."""
    root = tmp_path_factory.mktemp("select")
    walker = synthetic_dataset(lengths=(30, 30, 30), obs_dim=17, act_dim=6)
    write_minari_dir(TrajectoryDataset(list(walker), env_id="Walker2d-v5"), root / "data")
    train(
        TrainConfig(
            dataset=str(root / "data"),
            out=root / "run",
            model=UNetConfig(dim=8, dim_mults=(1, 2)),
            diffusion_steps=5,
            optim=OptimConfig(steps=6, batch_size=8, save_every=2, ema_start=2, ema_every=1),
            progress=False,
            threads=1,
        )
    )
    return root / "run"


def test_every_checkpoint_is_evaluated_on_the_same_seeds(three_checkpoints, tmp_path):
    config = SelectCheckpointConfig(
        run=three_checkpoints, out=tmp_path / "sel", episodes=2, seed=5, progress=False
    )
    chosen = select_checkpoint(config)
    rows = list(csv.DictReader((config.out / "selection.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    for row in rows:  # each row summarises its own evaluation folder's episodes
        folder = config.out / Path(row["checkpoint"]).name
        episodes = list(csv.DictReader((folder / "episodes.csv").read_text().splitlines()))
        assert [e["seed"] for e in episodes] == ["5", "6"]
        assert int(row["falls"]) == sum(e["fell"] == "True" for e in episodes)
    best = min(rows, key=lambda r: (int(r["falls"]), -float(r["percent_of_data"])))
    assert chosen.step == int(best["step"])
    record = json.loads((config.out / "selection.json").read_text())
    assert record["chosen"] == str(chosen.checkpoint) and record["seeds"] == [5, 6]
    assert f"| {chosen.step} **(chosen)** |" in (config.out / "selection.md").read_text()
    assert (config.out / "selection.png").read_bytes()[:4] == b"\x89PNG"


def _fake_evaluate(results: dict[int, tuple[int, list[float]]]):
    """An ``evaluate`` that writes ``results[step] = (falls, returns)`` without running."""

    def fake(config: EvaluateConfig) -> None:
        step = int(config.diffusion.name.removeprefix("step_"))
        falls, returns = results[step]
        config.out.mkdir(parents=True)
        write_json(
            config.out / "config.json",
            {"config": config_record(config), "dataset": {"mean_return": 200.0}},
        )
        mean = sum(returns) / len(returns)
        metrics = {"falls": falls, "percent_of_data": 100 * mean / 200.0, "mean_return": mean}
        episodes = [{"total_return": r} for r in returns]
        write_json(config.out / "metrics.json", [{"metrics": metrics, "episodes": episodes}])

    return fake


def test_fewest_falls_win_then_the_higher_return(three_checkpoints, tmp_path, monkeypatch):
    # step 4 scores highest but falls more; 2 and 6 tie on falls, 6 returns more.
    results = {2: (1, [100.0, 180.0]), 4: (2, [300.0, 300.0]), 6: (1, [150.0, 190.0])}
    monkeypatch.setattr(selection, "evaluate", _fake_evaluate(results))
    chosen = select_checkpoint(SelectCheckpointConfig(run=three_checkpoints, out=tmp_path))
    assert chosen.step == 6 and chosen.falls == 1
    assert chosen.percent_of_data == pytest.approx(85.0)
    assert chosen.standard_error == pytest.approx(10.0)  # returns 75 and 95 % of data


def test_a_second_run_reuses_finished_evaluations_only(three_checkpoints, tmp_path, monkeypatch):
    results = {2: (0, [200.0]), 4: (0, [210.0]), 6: (0, [190.0])}
    monkeypatch.setattr(selection, "evaluate", _fake_evaluate(results))
    config = SelectCheckpointConfig(run=three_checkpoints, out=tmp_path, episodes=1)
    assert select_checkpoint(config).step == 4

    def must_not_run(evaluation: EvaluateConfig) -> None:
        raise AssertionError(f"evaluated {evaluation.diffusion} again")

    monkeypatch.setattr(selection, "evaluate", must_not_run)
    assert select_checkpoint(replace(config, threads=1, progress=False)).step == 4
    with pytest.raises(AssertionError, match="evaluated"):  # other seeds: evaluate again
        select_checkpoint(replace(config, seed=100))


def test_bad_runs_and_steps_are_refused(three_checkpoints, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"no checkpoint at step\(s\) \[3\]; it keeps \[2, 4, 6\]"):
        select_checkpoint(SelectCheckpointConfig(run=three_checkpoints, steps=(2, 3)))
    with pytest.raises(FileNotFoundError, match="no checkpoints/step_"):
        select_checkpoint(SelectCheckpointConfig(run=tmp_path))
    with pytest.raises(SystemExit):
        main(["select-checkpoint", "--run", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "diffplan: error:" in capsys.readouterr().err
