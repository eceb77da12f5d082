"""``diffplan run --quick`` end to end (slow: about 2 minutes on 2 cores)."""

from __future__ import annotations

import csv
import json

import pytest

from diffplan.cli import main


@pytest.mark.slow
def test_quick_run_writes_the_report_folder_from_the_packaged_agent(tmp_path, capsys):
    main(["run", "--quick", "--threads", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "DEMO" in printed
    for folder in ("evaluation-tracked", "evaluation-report"):
        evaluation = tmp_path / folder
        for name in ("report.md", "metrics.csv", "episodes.csv", "scores.png", "episodes.png"):
            assert (evaluation / name).stat().st_size > 0, (folder, name)
        rows = list(csv.DictReader((evaluation / "metrics.csv").open()))
        assert [row["label"] for row in rows] == ["k=1", "k=7", "k=7 guided"]
        assert all(int(row["episodes"]) == 2 for row in rows)
    assert (
        "from the real state and the next planned state"
        in (tmp_path / "evaluation-tracked" / "report.md").read_text()
    )
    results = json.loads((tmp_path / "results.json").read_text())
    presets = {setting["preset"] for setting in results["settings"]}
    assert presets == {"tracked", "report", "bc"}
    bc = [setting for setting in results["settings"] if setting["preset"] == "bc"]
    assert [(s["k"], s["episodes"], s["seeds"]) for s in bc] == [(1, 2, [0, 1])]
    assert (tmp_path / "report.md").stat().st_size > 0


def walker_shaped(tmp_path, env_id: str | None):
    """A random dataset with Walker2d-v5's dims, recorded as collected in ``env_id``."""
    from conftest import synthetic_dataset

    from diffplan.data.episodes import TrajectoryDataset
    from diffplan.data.minari_format import write_minari_dir

    episodes = list(synthetic_dataset(lengths=(20, 30), obs_dim=17, act_dim=6))
    dataset = TrajectoryDataset(episodes, env_id=env_id, name="walker-shaped")
    return write_minari_dir(dataset, tmp_path / f"data-{env_id}")


@pytest.mark.parametrize(
    ("options", "env_id", "message"),
    [
        (["--agent", "agent.zip"], "Walker2d-v5", "--dataset and --agent both say where"),
        (["--env", "Hopper-v5"], "Walker2d-v5", "--env Hopper-v5 conflicts with --dataset"),
        ([], None, "the data names no environment to plan in"),
    ],
)
def test_run_on_a_dataset_refuses_conflicting_options(tmp_path, capsys, options, env_id, message):
    from conftest import cli_error

    data = walker_shaped(tmp_path, env_id)
    out = tmp_path / "run"
    err = cli_error(capsys, "run", "--quick", "--dataset", str(data), "--out", str(out), *options)
    assert message in err
    assert not (out / "diffusion").exists()


@pytest.mark.slow
def test_quick_run_on_a_given_dataset_trains_on_it_quietly_without_collecting(tmp_path, capsys):
    data = tmp_path / "data"
    main(["collect", "--steps", "3000", "--out", str(data), "--no-progress"])
    out = tmp_path / "run"
    capsys.readouterr()
    run = ["run", "--quick", "--threads", "1", "--no-progress"]
    main([*run, "--dataset", str(data), "--out", str(out)])
    assert "step/s" not in capsys.readouterr().err  # no stage drew a progress bar
    assert not (out / "data").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["num_steps"] == 3000
    trained_on = json.loads((out / "diffusion" / "config.json").read_text())
    assert str(data) in json.dumps(trained_on)
