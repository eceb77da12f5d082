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
