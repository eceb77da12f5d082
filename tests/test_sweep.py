"""``diffplan sweep``: grid files, the process pool vs Ray, resuming a killed sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffplan.atomic import write_json
from diffplan.evaluation.results import SCHEMA
from diffplan.sweep import DONE, Job, SweepConfig, read_grid, sweep, write_merged

# collect from the packaged Walker2d agent: a few seconds per job, no ../shared needed
COLLECT = """
out: {out}
grid:
  seed: [0, 1, 2]
methods:
  walker:
    command: collect
    options: {{steps: {steps}, seed: "{{seed}}", num_envs: 1, progress: false}}
"""


def grid_file(tmp_path: Path, steps: int = 300) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(COLLECT.format(out=tmp_path / "sweep", steps=steps))
    return path


def executions(job_folder: Path) -> int:
    """How many times the sweep started the job (one header line in sweep.log each)."""
    log = job_folder / "sweep.log"
    return log.read_text().count("# diffplan sweep:") if log.exists() else 0


def test_grid_options_become_arguments(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        "out: OUT\n"
        "grid:\n  task: [{env: Hopper-v5, agent: a.zip}, {env: HalfCheetah-v5, agent: b.zip}]\n"
        "  seed: [0, 1]\n"
        "methods:\n  m:\n    command: make-datasets\n"
        "    options: {env: '{env}', expert_agent: '{agent}', quality: [medium, expert],\n"
        "              seed: '{seed}', progress: false, steps: 10}\n"
    )
    root, jobs = read_grid(path, None)
    assert root == Path("OUT") and len(jobs) == 4
    assert jobs[2].folder == Path("OUT/jobs/m/task=HalfCheetah-v5,seed=0")
    assert jobs[2].argv[3:] == [
        "make-datasets", "--env", "HalfCheetah-v5", "--expert-agent", "b.zip", "--quality",
        "medium", "expert", "--seed", "0", "--no-progress", "--steps", "10",
        "--out", "OUT/jobs/m/task=HalfCheetah-v5,seed=0/out",
    ]  # fmt: skip
    assert read_grid(path, tmp_path / "elsewhere")[0] == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ("m: {command: nope}", "command 'nope' is not one of"),
        ("m: {command: collect, options: {seed: '{missing}'}}", "uses {missing}, which is not"),
        ("m: {command: collect, options: {out: x}}", "each job gets its own --out"),
    ],
)
def test_bad_grids_are_refused_naming_the_problem(tmp_path, methods, message):
    path = tmp_path / "grid.yaml"
    path.write_text(f"out: x\ngrid: {{seed: [0]}}\nmethods:\n  {methods}\n")
    with pytest.raises(ValueError, match=message):
        read_grid(path, None)


def test_merged_report_gathers_results_json(tmp_path):
    job = Job("bc", "seed=0", {"seed": "0"}, "baseline", (), tmp_path / "jobs" / "bc" / "seed=0")
    setting = {"preset": "custom", "k": 1, "guided": False, "episodes": 2, "mean_return": 90.0,
               "ci95": [80.0, 100.0], "falls": 1, "percent_of_data": 90.0, "d4rl_score": 45.0,
               "v_rate": 1.0, "value_rate": 1.0}  # fmt: skip
    document = {"schema": SCHEMA, "env_id": "Hopper-v5", "dataset": {"mean_return": 100.0},
                "settings": [setting]}  # fmt: skip
    write_json(job.folder / "out" / "seed-0" / "results.json", document)
    report = write_merged(tmp_path, [job], [{"status": "done", "seconds": 1.0}])
    assert (
        "| bc seed=0 seed-0 | custom | 1 | no | 2 | 90.0 [80.0, 100.0] | 1 |" in report.read_text()
    )
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[1] == "bc,seed=0,0,seed-0,custom,1,False,2,90.0,80.0,100.0,1,90.0,45.0"


def test_pool_and_ray_give_the_same_merged_results(tmp_path):
    pytest.importorskip("ray")
    path = grid_file(tmp_path)
    sweep(SweepConfig(grid=path, out=tmp_path / "pool", workers=2, progress=False))
    sweep(SweepConfig(grid=path, out=tmp_path / "ray", workers=2, ray_address="local",
                      progress=False))  # fmt: skip
    pooled = (tmp_path / "pool" / "datasets.csv").read_text()
    assert pooled == (tmp_path / "ray" / "datasets.csv").read_text()
    assert len(pooled.splitlines()) == 4  # header + 3 jobs
    assert len(set(line.split(",")[-2] for line in pooled.splitlines()[1:])) == 3  # 3 seeds


def test_killed_sweep_resumes_without_redoing_finished_jobs(tmp_path):
    path = grid_file(tmp_path, steps=2000)
    command = [sys.executable, "-m", "diffplan", "sweep", str(path), "--workers", "1"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    folders = [tmp_path / "sweep" / "jobs" / "walker" / f"seed={s}" for s in range(3)]
    deadline = time.monotonic() + 120
    while not (folders[0] / DONE).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = [f for f in folders if (f / DONE).exists()]
    assert finished and len(finished) < 3
    sweep(SweepConfig(grid=path, workers=1, progress=False))
    assert all((f / DONE).exists() for f in folders)
    assert [executions(f) for f in finished] == [1] * len(finished)
    jobs = (tmp_path / "sweep" / "jobs.csv").read_text()
    assert jobs.count(",skipped,") == len(finished) and jobs.count(",done,") == 3 - len(finished)
