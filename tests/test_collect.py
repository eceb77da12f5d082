"""Agents from model zips, rollouts and ``diffplan collect`` (uses the shared RL Zoo agents)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import gymnasium as gym
import numpy as np
import pytest
from conftest import agent_zip

from diffplan.agents import AgentError, load_agent
from diffplan.collect import CollectConfig, collect, record_episodes
from diffplan.data.sources import load_dataset


@pytest.fixture(scope="module")
def walker():
    env = gym.make("Walker2d-v5")
    yield env
    env.close()


@pytest.mark.parametrize("name", ["sac", "tqc"])
def test_weights_loader_matches_stable_baselines3(walker, name):
    pytest.importorskip("sb3_contrib")
    path = agent_zip(name)
    safe, trusted = load_agent(path, walker, "weights"), load_agent(path, walker, "sb3", trust=True)
    assert safe.algorithm == trusted.algorithm == name.upper()
    observations = np.random.default_rng(0).normal(size=(5, 17)).astype(np.float32)
    noise = np.random.default_rng(1).normal(size=(5, 6))
    np.testing.assert_allclose(safe.act(observations), trusted.act(observations), atol=1e-6)
    np.testing.assert_allclose(
        safe.act(observations, noise), trusted.act(observations, noise), atol=1e-6
    )
    assert np.abs(safe.act(observations, noise)).max() <= 1.0


def test_agent_for_another_env_is_refused():
    hopper = gym.make("Hopper-v5")
    with pytest.raises(ValueError, match=r"trained on Walker2d-v3, not a version of Hopper-v5"):
        load_agent(agent_zip("sac"), hopper)
    with pytest.raises(AgentError, match=r"observations of dim 17 .* observation shape \(11,\)"):
        load_agent(agent_zip("sac"), hopper, force_env=True)


def test_bad_agent_files(tmp_path, walker):
    with pytest.raises(FileNotFoundError, match="no such agent file"):
        load_agent(tmp_path / "missing.zip", walker)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(AgentError, match=r"not a stable-baselines3 model zip"):
        load_agent(tmp_path / "junk.zip", walker)
    with zipfile.ZipFile(tmp_path / "ppo.zip", "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": {"__module__": "x.ppo.policies"}}))
    with pytest.raises(AgentError, match=r"'x\.ppo\.policies' is not supported"):
        load_agent(tmp_path / "ppo.zip", walker)
    with pytest.raises(ValueError, match="unknown agent loader"):
        load_agent(agent_zip("sac"), walker, "pickle")


def test_rollout_is_reproducible_and_seeded_per_episode(walker):
    agent = load_agent(agent_zip("sac"), walker)
    kwargs = {"noise": "gaussian", "sigma": 0.1}
    first = record_episodes(agent, "Walker2d-v5", steps=400, num_envs=2, **kwargs)
    again = record_episodes(agent, "Walker2d-v5", steps=400, num_envs=2, **kwargs)
    alone = record_episodes(agent, "Walker2d-v5", steps=200, num_envs=1, **kwargs)
    assert [e.seed for e in first] == [0, 1] and [len(e) for e in first] == [200, 200]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
    # same reset seed and noise stream: equal until batch-size rounding has grown
    assert alone[0].seed == 0
    np.testing.assert_allclose(first[0].actions[:10], alone[0].actions[:10], atol=1e-4)
    cut = record_episodes(agent, "Walker2d-v5", steps=1234, num_envs=3, noise="none")
    assert sum(len(e) for e in cut) == 1234
    assert all(e.terminated or e.truncated for e in cut)
    assert [e.id for e in cut] == sorted(e.id for e in cut)


def test_rollout_option_errors(walker):
    agent = load_agent(agent_zip("sac"), walker)
    with pytest.raises(ValueError, match="exactly one of --steps and --episodes"):
        record_episodes(agent, "Walker2d-v5")
    with pytest.raises(ValueError, match="--sigma must be > 0"):
        record_episodes(agent, "Walker2d-v5", steps=10, noise="gaussian", sigma=0.0)


def test_collect_writes_a_dataset_with_provenance(tmp_path):
    path = agent_zip("sac")
    config = CollectConfig(agent=path, out=tmp_path / "sac", episodes=2, num_envs=2, progress=False)
    dataset = collect(config)
    back = load_dataset(str(tmp_path / "sac"))
    assert back.info.num_steps == dataset.info.num_steps >= 2
    source = back.info.source
    assert source["agent_algorithm"] == "SAC" and source["noise"] == "gaussian"
    assert source["sigma"] == 0.03 and source["seed"] == 0 and len(source["agent_sha256"]) == 64
    assert source["versions"]["numpy"] == np.__version__ and source["cpu"]
    assert back.env_id == "Walker2d-v5"
    # the deterministic SAC agent walks (3910 on v5); with sigma 0.03 both episodes should too
    assert back.info.mean_return > 3000
    with pytest.raises(FileExistsError, match="--overwrite"):
        collect(config)


def test_cli_collect_and_info_in_a_subprocess(tmp_path):
    out = tmp_path / "cli"
    command = [
        sys.executable,
        "-m",
        "diffplan",
        "collect",
        "--agent",
        str(agent_zip("sac")),
        "--steps",
        "300",
        "--out",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "steps     300" in done.stdout
    info = subprocess.run(
        [sys.executable, "-m", "diffplan", "info", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["num_steps"] == 300


def test_cli_reports_user_errors_in_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffplan",
            "collect",
            "--agent",
            str(tmp_path / "none.zip"),
            "--steps",
            "10",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "diffplan: error:" in done.stderr and "no such agent file" in done.stderr
    assert "Traceback" not in done.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffplan",
            "collect",
            "--agent",
            "a.zip",
            "--out",
            "x",
            "--noise",
            "loud",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "loud" in bad.stderr + bad.stdout
