"""Pooling over training seeds: per-seed rows, the pooled mean and its bootstrap CI over seeds."""

from __future__ import annotations

import json

import pytest

from diffplan.cli import main
from diffplan.evaluation.pooled import pool


def records(percents: dict[str, float], falls: int = 0, episodes: int = 50) -> list[dict]:
    """``metrics.json`` records: one per label, with the fields pooling reads."""
    return [
        {"label": label, "metrics": {"percent_of_data": p, "falls": falls, "episodes": episodes}}
        for label, p in percents.items()
    ]


def test_pooled_mean_and_ci_over_seeds_on_fixed_numbers():
    runs = {
        "seed-0": records({"k=1": 90.0, "k=4": 100.0}, falls=2),
        "seed-1": records({"k=1": 100.0, "k=4": 100.0}, falls=0),
        "seed-2": records({"k=1": 110.0, "k=4": 100.0}, falls=1),
    }
    first, same = pool(runs)
    assert first.label == "k=1" and first.runs == ["seed-0", "seed-1", "seed-2"]
    assert first.percent_of_data == [90.0, 100.0, 110.0] and first.falls == [2, 0, 1]
    assert first.mean_percent == pytest.approx(100.0) and first.total_falls == 3
    # Resampling three seeds: the CI lies within the seeds' range, around the mean, not a point.
    assert 90.0 <= first.ci_low < 100.0 < first.ci_high <= 110.0
    assert (same.ci_low, same.ci_high) == pytest.approx((100.0, 100.0))  # no spread, no width
    assert pool(runs)[0] == first  # seeded: the same interval every time


def test_pooling_refuses_runs_with_different_settings():
    runs = {"a": records({"k=1": 90.0}), "b": records({"k=2": 95.0})}
    with pytest.raises(ValueError, match="'k=1' is missing from the runs \\['b'\\]"):
        pool(runs)


def test_pool_command_reads_evaluation_folders(tmp_path, capsys):
    for name, percent in (("seed-0", 98.0), ("seed-1", 102.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(records({"bc": percent})))
    out = tmp_path / "pooled"
    main(["pool", str(tmp_path / "seed-0"), str(tmp_path / "seed-1"), "--out", str(out)])
    (row,) = json.loads((out / "pooled.json").read_text())
    assert row["mean_percent"] == pytest.approx(100.0)
    assert "| bc | 98.0 (0/50) | 102.0 (0/50) | 100.0 [" in (out / "pooled.md").read_text()
    with pytest.raises(SystemExit):
        main(["pool", str(tmp_path / "missing"), "--out", str(out)])
    assert "metrics.json not found" in capsys.readouterr().err


def test_pool_checks_validation_seeds_are_disjoint_from_reported_ones(tmp_path):
    runs, selections = [], []
    for index, percent in enumerate((97.0, 103.0)):
        run, selection = tmp_path / f"eval-{index}", tmp_path / f"select-{index}"
        run.mkdir()
        selection.mkdir()
        (run / "metrics.json").write_text(json.dumps(records({"k=1": percent})))
        (run / "config.json").write_text(json.dumps({"config": {"seed": 1000, "episodes": 50}}))
        chosen = {"chosen": f"train-{index}/checkpoints/step_30000", "seeds": [0, 99]}
        (selection / "selection.json").write_text(json.dumps(chosen))
        runs.append(str(run))
        selections.append(str(selection))
    out = tmp_path / "pooled"
    main(["pool", *runs, "--out", str(out), "--selections", *selections])
    report = (out / "pooled.md").read_text()
    assert "chosen on validation episode seeds 0-99, reported on episode seeds 1000-1049" in report
    (tmp_path / "eval-1" / "config.json").write_text(
        json.dumps({"config": {"seed": 50, "episodes": 100}})
    )
    with pytest.raises(SystemExit):  # seeds 50-149 overlap the validation seeds 0-99
        main(["pool", *runs, "--out", str(out), "--selections", *selections])


def test_one_run_pools_to_its_own_numbers_without_an_interval():
    (only,) = pool({"seed-0": records({"bc": 97.5}, falls=3)})
    assert only.mean_percent == 97.5 and only.total_falls == 3
    assert only.ci_low is None and only.ci_high is None
