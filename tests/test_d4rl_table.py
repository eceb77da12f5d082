"""``diffplan report --d4rl``: the task x quality table, on hand-made results documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffplan.evaluation.d4rl_table import (
    d4rl_table,
    dataset_label,
    dataset_quality,
    find_results,
    method_settings,
)
from diffplan.evaluation.results import SCHEMA, ReportConfig, report_command
from diffplan.tasks import task_for

HOPPER = task_for("Hopper-v5")


def dataset(source: dict, mean_return: float = 1000.0) -> dict:
    return {"env_id": "Hopper-v5", "num_episodes": 200, "mean_return": mean_return,
            "source": source}  # fmt: skip


MEDIUM = dataset({"recipe": {"quality": "medium"}, "dataset_id": "diffplan/hopper/medium-v0"})


def setting(preset: str, k: int, guided: bool, returns: list[float], falls: int, **extra) -> dict:
    return {"preset": preset, "k": k, "guided": guided, "returns": returns, "falls": falls,
            **extra}  # fmt: skip


def document(data: dict, settings: list[dict], config: dict | None = None) -> dict:
    return {"schema": SCHEMA, "env_id": data["env_id"], "dataset": data, "settings": settings,
            "config": config or {}, "checkpoint_step": None, "git_revision": "abc1234"}  # fmt: skip


def test_quality_comes_from_the_recipe_the_minari_id_or_a_known_expert():
    assert dataset_quality(MEDIUM) == "medium"
    assert dataset_quality(dataset({"dataset_id": "mujoco/hopper/medium-replay-v0"})) == (
        "medium-replay"
    )
    zoo = dataset(
        {"agent_file": "/x/tqc-Hopper-v3/Hopper-v3.zip", "dataset_id": "diffplan/data-v0"}
    )
    assert dataset_quality(zoo) == "expert" and dataset_label(zoo) == "tqc-Hopper-v3"
    mine = dataset({"agent_file": "/x/my-agent", "dataset_id": "diffplan/data-v0"})
    assert dataset_quality(mine) == "other" and dataset_label(mine) == "my-agent"


def test_planners_are_scored_at_their_guided_setting_baselines_as_they_are():
    chosen = method_settings(
        document(
            MEDIUM,
            [
                setting("tracked", 1, False, [1.0], 0),
                setting("tracked", 3, True, [2.0], 0),
                setting("tracked", 7, True, [3.0], 0),
                setting("report", 1, False, [4.0], 0),
                setting("bc", 1, False, [5.0], 0),
            ],
        )
    )
    assert chosen["tracked"]["k"] == 7 and chosen["bc"]["returns"] == [5.0]
    assert "report" not in chosen  # no guided setting: no D4RL cell


def test_cells_pool_the_episodes_of_every_document_of_one_dataset():
    run = document(
        MEDIUM,
        [
            setting("tracked", 7, True, [1000.0, 2000.0], 1),
            setting("bc", 1, False, [500.0], 1, training_steps=20000),
        ],
        config={"train_steps": 20000, "value_steps": 10000, "inverse_steps": 10000},
    )
    more = document(MEDIUM, [setting("tracked", 7, True, [3000.0], 0)])
    iql = document(MEDIUM, [setting("iql", 1, False, [1500.0, 1700.0], 0)], {"steps": 10000})
    table = d4rl_table([run, more, iql])
    header, _, row = table.splitlines()[:3]
    assert header.split(" | ")[3:8] == ["bc", "iql", "td3bc", "tracked", "diffuser (published)"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    data = f"diffplan/hopper/medium-v0: {HOPPER.normalized_score(1000.0):.1f}"
    assert cells[:3] == ["hopper", "medium", data]
    tracked = [HOPPER.normalized_score(r) for r in (1000.0, 2000.0, 3000.0)]
    assert cells[6].startswith(f"{sum(tracked) / 3:.1f} [") and cells[6].endswith("(1/3)")
    assert cells[3] == f"{HOPPER.normalized_score(500.0):.1f} (1/1)"  # one episode: no CI
    assert cells[5] == "—" and cells[7:] == ["58.5", "52.9"]  # no td3bc; published medium
    assert "- iql: 10000 steps\n" in table and "- bc: 20000 steps\n" in table
    budget = "diffusion 20000, value 10000, inverse dynamics 10000 steps; not recorded"
    assert f"- tracked: {budget}\n" in table  # the second document names no checkpoint


def test_two_datasets_of_one_quality_are_two_rows():
    other = dataset(
        {"recipe": {"quality": "medium"}, "dataset_id": "elsewhere/hopper/medium-v0"}, 1200.0
    )
    table = d4rl_table([document(MEDIUM, [setting("bc", 1, False, [1.0], 0)]),
                        document(other, [setting("bc", 1, False, [2.0], 0)])])  # fmt: skip
    assert sum(line.startswith("| hopper | medium |") for line in table.splitlines()) == 2


def test_report_d4rl_searches_folders_and_refuses_two_layouts(tmp_path: Path, capsys):
    for seed, returns in ((0, [800.0, 900.0]), (1, [1000.0, 1100.0])):
        folder = tmp_path / "bc" / f"seed-{seed}"
        folder.mkdir(parents=True)
        doc = document(MEDIUM, [setting("bc", 1, False, returns, 0)], {"steps": 20000})
        (folder / "results.json").write_text(json.dumps(doc))
    seeds = [tmp_path / "bc" / f"seed-{s}" / "results.json" for s in (0, 1)]
    assert find_results([tmp_path / "bc"]) == seeds
    text = report_command(ReportConfig(results=(tmp_path / "bc",), d4rl=True))
    scores = [HOPPER.normalized_score(r) for r in (800.0, 900.0, 1000.0, 1100.0)]
    assert f"| {sum(scores) / 4:.1f} [" in text and "(0/4)" in text
    with pytest.raises(ValueError, match="--by-k and --d4rl"):
        report_command(ReportConfig(results=(tmp_path / "bc",), d4rl=True, by_k=True))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no results\.json in or below"):
        find_results([tmp_path / "empty"])
