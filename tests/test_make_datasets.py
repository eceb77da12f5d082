"""train-agent's replay recording and make-datasets' qualities, on tiny training runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from test_tasks import mujoco_agent

from diffplan.agents.replay import replay_upto, snapshots
from diffplan.data.minari_format import read_minari_dir
from diffplan.make_datasets import MakeDatasetsConfig, make_datasets, standing_warning
from diffplan.tasks import task_for

pytest.importorskip("stable_baselines3")


def test_an_agent_earning_only_the_alive_bonus_is_called_standing():
    hopper, cheetah = task_for("Hopper-v5"), task_for("HalfCheetah-v5")
    # Hopper medium of a 600k-step PPO run here: 1031.0 over 1000-step episodes
    assert "stands rather than moves" in standing_warning("medium", 1.031, hopper)
    assert standing_warning("medium", 2.89, hopper) is None  # a hopping (and falling) agent
    assert standing_warning("medium-replay", 0.5, hopper) is None  # early training: not an agent
    assert standing_warning("medium", 0.01, cheetah) is None  # no alive bonus to earn


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_train_agent_records_its_experience_resumably(tmp_path, algorithm):
    from diffplan.agents.gaussian_mlp import load_gaussian_mlp
    from diffplan.agents.train_expert import TrainAgentConfig, train_agent

    config = TrainAgentConfig(out=tmp_path, env="Hopper-v5", algorithm=algorithm, steps=2048,
                              checkpoint_every=1024, eval_episodes=1, record=True,
                              progress=False)  # fmt: skip
    train_agent(config)
    assert load_gaussian_mlp(tmp_path).algorithm == algorithm.upper()
    assert [steps for steps, _ in snapshots(tmp_path)] == [1024, 2048]
    episodes = replay_upto(tmp_path, 2048)
    # the recorded episodes are the ones the learner played, as its Monitor saw them
    with (tmp_path / "monitor" / "0.monitor.csv").open() as file:
        next(file)  # Monitor's JSON header line
        monitored = [(float(row["r"]), int(row["l"])) for row in csv.DictReader(file)]
    # the dataset stores rewards in float32, Monitor sums float64 ones: rounding both to 4
    # decimals flipped a last digit once (14.5468 against 14.5467), so compare to 1e-4
    assert [len(e) for e in episodes] == [n for _, n in monitored]
    assert [e.total_return for e in episodes] == pytest.approx([r for r, _ in monitored], abs=1e-4)
    assert all(e.terminated != e.truncations[-1] for e in episodes)
    # raw observations, not VecNormalize's: Hopper's torso height starts near 1.25
    assert abs(float(episodes[0].observations[0, 0]) - 1.25) < 0.01
    assert len(replay_upto(tmp_path, 1024)) < len(episodes)
    first = (snapshots(tmp_path)[0][1] / "replay").stat().st_mtime_ns
    train_agent(TrainAgentConfig(**{**vars(config), "steps": 4096, "resume": True}))
    assert [steps for steps, _ in snapshots(tmp_path)] == [1024, 2048, 3072, 4096]
    assert (snapshots(tmp_path)[0][1] / "replay").stat().st_mtime_ns == first
    assert len(replay_upto(tmp_path, 4096)) > len(episodes)
    with (tmp_path / "monitor" / "0.monitor.csv").open() as file:  # the resumed run appended
        assert len(file.readlines()) - 2 == len(replay_upto(tmp_path, 4096))


def test_make_datasets_builds_every_quality_and_resumes(tmp_path, capsys):
    agent = mujoco_agent("Hopper-v5")
    config = MakeDatasetsConfig(out=tmp_path, env="Hopper-v5", expert_agent=agent, steps=1500,
                                training_steps=4096, checkpoint_every=2048, eval_episodes=1,
                                num_envs=2, progress=False)  # fmt: skip
    paths = make_datasets(config)
    assert [p.name for p in paths] == [
        "expert-v0",
        "medium-v0",
        "medium-replay-v0",
        "medium-expert-v0",
    ]
    data = {p.name[:-3]: read_minari_dir(p) for p in paths}
    recipes = {q: d.source["recipe"] for q, d in data.items()}
    medium = recipes["medium"]
    assert medium["snapshot_steps"] in (2048, 4096) and medium["target_fraction"] == 1 / 3
    candidates = medium["candidates"]
    target = medium["expert_return"] / 3
    assert abs(medium["snapshot_return"] - target) == min(
        abs(r - target) for r in candidates.values()
    )
    assert data["medium"].info.num_steps == data["expert"].info.num_steps == 1500
    assert data["medium-expert"].info.num_steps == 3000
    replay = replay_upto(tmp_path / "hopper" / "train-agent-sac", medium["snapshot_steps"])
    assert data["medium-replay"].info.num_steps == sum(len(e) for e in replay)
    np.testing.assert_array_equal(data["medium-replay"][0].actions, replay[0].actions)
    assert all(recipe["seconds"] >= 0 for recipe in recipes.values())
    # D4RL's recipe: the expert's and the medium agent's actions sampled from their policies
    assert data["expert"].source["noise"] == data["medium"].source["noise"] == "policy"
    metadata = json.loads((paths[0] / "data" / "metadata.json").read_text())
    assert metadata["dataset_id"] == "diffplan/hopper/expert-v0"
    # a second call finds every part complete and rebuilds nothing
    stamps = [(p / "data" / "metadata.json").stat().st_mtime_ns for p in paths]
    capsys.readouterr()
    make_datasets(config)
    assert [(p / "data" / "metadata.json").stat().st_mtime_ns for p in paths] == stamps
    assert "steps, return" not in capsys.readouterr().out


def test_make_datasets_refuses_bad_options(tmp_path):
    with pytest.raises(ValueError, match=r"--medium-fraction 1\.5"):
        make_datasets(MakeDatasetsConfig(out=tmp_path, medium_fraction=1.5))
