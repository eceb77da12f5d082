"""``diffplan sweep GRID.yaml``: a grid of independent diffplan jobs, on a pool or a Ray cluster.

A grid file names variables and methods; every method runs once per combination
of the variables (task x quality x training seed x method)::

    out: runs/sweep                    # optional (--out overrides)
    grid:                              # variables: every combination is a job per method
      task:                            # a list of mappings sets variables together
        - {env: Hopper-v5, agent: zoo/tqc-Hopper-v3/Hopper-v3.zip}
        - {env: HalfCheetah-v5, agent: zoo/tqc-HalfCheetah-v3/HalfCheetah-v3.zip}
      seed: [0, 1, 2]
    methods:                           # name -> a diffplan command and its options
      bc:
        command: baseline
        options: {dataset: "data/{family}/medium-v0", algo: bc, seeds: "{seed}"}

Option values are formatted with the job's variables (``{seed}``) and ``{family}``
(the task family of ``{env}``, when the grid has ``env``); ``true`` / ``false`` become
``--flag`` / ``--no-flag``, lists several values. Each job runs ``python -m diffplan
COMMAND ... --out OUT/jobs/METHOD/VARS/out`` in its own process, logs to ``sweep.log``
beside it and, once it succeeds, writes ``done.json`` there (atomically, last): a job
with ``done.json`` is skipped, so a killed sweep resumes where it stopped. At the end
every job's ``results.json`` and datasets are merged into ``OUT/report.md``,
``OUT/results.csv`` and ``OUT/datasets.csv``; ``OUT/jobs.csv`` lists the jobs.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tyro
import yaml
from tqdm.auto import tqdm

from diffplan.atomic import atomic_path, write_json
from diffplan.commands import JOB_COMMANDS
from diffplan.data.minari_format import read_minari_dir
from diffplan.evaluation.results import read_results, results_table
from diffplan.tasks import find_task

DONE = "done.json"


@dataclass
class SweepConfig:
    """Run a grid of diffplan jobs (GRID.yaml) on a local process pool or a Ray cluster."""

    grid: tyro.conf.Positional[Path]
    """Grid file (YAML): grid (variables), methods (command + options), optionally out."""
    out: Path | None = None
    """Sweep folder (jobs/, report.md, results.csv, datasets.csv); None: the grid's out."""
    workers: int = os.cpu_count() or 1
    """Jobs run at once (local pool), or CPUs of a local Ray cluster (--ray-address local)."""
    ray_address: str | None = None
    """Run the jobs on Ray (pip install 'diffplan[ray]'): a cluster address (ray://HOST:10001
    or auto), or 'local' for a local cluster of --workers CPUs. OUT must be on storage every
    node shares."""
    progress: bool = True
    """Show a progress bar over jobs."""


@dataclass(frozen=True)
class Job:
    """One command of the grid: ``folder`` holds its log, ``done.json`` and ``out/``."""

    method: str
    name: str
    """The job's folder name: its variables, ``key=value,...``."""
    variables: dict[str, str]
    command: str
    args: tuple[str, ...]
    folder: Path

    @property
    def argv(self) -> list[str]:
        """The process to run: ``python -m diffplan COMMAND ARGS --out FOLDER/out``."""
        out = str(self.folder / "out")
        return [sys.executable, "-m", "diffplan", self.command, *self.args, "--out", out]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def _option_args(name: str, value: Any, variables: dict[str, str], where: str) -> list[str]:
    """``--name value`` (formatted with ``variables``), ``--name``/``--no-name``, or a list."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool):
        return [flag] if value else [f"--no-{name.replace('_', '-')}"]
    values = value if isinstance(value, list) else [value]
    try:
        return [flag, *(str(v).format(**variables) for v in values)]
    except (KeyError, IndexError) as error:
        raise ValueError(
            f"{where}: option {name!r} uses {{{error.args[0]}}}, which is not a grid variable "
            f"(variables: {', '.join(variables)}); add it to grid or write the value out"
        ) from None


def read_grid(path: Path, out: Path | None) -> tuple[Path, list[Job]]:
    """The sweep folder and every job of the grid file ``path`` (ValueError naming the file
    and the problem when it is malformed)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such grid file; see `diffplan sweep --help`")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("methods"), dict):
        raise ValueError(f"{path}: a grid file needs a 'methods' mapping (name -> command)")
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(
            f"{path}: 'grid' must map each variable to a non-empty list of values (or of "
            "mappings, which set several variables together)"
        )
    unknown = set(spec) - {"out", "grid", "methods"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; use out, grid and methods")
    root = out or (Path(spec["out"]) if spec.get("out") else None)
    if root is None:
        raise ValueError(f"{path}: no sweep folder; give 'out' in the grid file or --out")
    jobs = []
    for method, body in spec["methods"].items():
        where = f"{path}: method {method!r}"
        command = body.get("command") if isinstance(body, dict) else None
        if command not in JOB_COMMANDS:
            known = ", ".join(JOB_COMMANDS)
            raise ValueError(f"{where}: command {command!r} is not one of: {known}")
        options = body.get("options") or {}
        if "out" in options:
            raise ValueError(f"{where}: leave 'out' out; each job gets its own --out")
        for values in itertools.product(*grid.values()):
            variables, parts = {}, []
            for key, value in zip(grid, values, strict=True):
                # a mapping sets several variables together (named by its first value)
                group = (
                    {str(k): str(v) for k, v in value.items()}
                    if isinstance(value, dict)
                    else {key: str(value)}
                )
                variables.update(group)
                parts.append(f"{key}={_safe(next(iter(group.values())))}")
            task = find_task(variables.get("env"))
            context = {**variables, **({"family": task.family} if task else {})}
            args = [a for k, v in options.items() for a in _option_args(k, v, context, where)]
            name = ",".join(parts) or "job"
            folder = root / "jobs" / _safe(method) / name
            jobs.append(Job(method, name, variables, command, tuple(args), folder))
    return root, jobs


def run_job(job: Job) -> dict[str, Any]:
    """Run ``job`` in its own process (skipped when done); its ``done.json`` record, or
    ``{"status": "failed", ...}``."""
    done = job.folder / DONE
    if done.is_file():
        return {**json.loads(done.read_text()), "status": "skipped"}
    job.folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with (job.folder / "sweep.log").open("a") as log:
        log.write(f"# diffplan sweep: {datetime.now(timezone.utc).isoformat()} "
                  f"{' '.join(job.argv)}\n")  # fmt: skip
        log.flush()
        code = subprocess.run(job.argv, stdout=log, stderr=subprocess.STDOUT).returncode
    record = {"status": "done" if code == 0 else "failed", "returncode": code,
              "seconds": round(time.perf_counter() - began, 1), "argv": job.argv}  # fmt: skip
    if code == 0:
        write_json(done, record)  # last: marks the job complete
    return record


def _on_pool(jobs: list[Job], workers: int, bar: tqdm) -> list[dict[str, Any]]:
    """Jobs on ``workers`` threads, each waiting on its job's process."""
    records: list[dict[str, Any]] = [{}] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            records[futures[future]] = future.result()
            bar.update(1)
    return records


def _on_ray(jobs: list[Job], address: str, workers: int, bar: tqdm) -> list[dict[str, Any]]:
    """Jobs as Ray tasks of one CPU each; ``address`` 'local' starts a local cluster."""
    try:
        import ray
    except ImportError:
        raise ImportError("--ray-address needs Ray: pip install 'diffplan[ray]'") from None
    if address == "local":
        ray.init(num_cpus=workers, include_dashboard=False)
    else:
        ray.init(address=address)
    try:
        remote = ray.remote(num_cpus=1)(run_job)
        refs = [remote.remote(job) for job in jobs]
        pending = list(refs)
        while pending:
            finished, pending = ray.wait(pending)
            bar.update(len(finished))
        return ray.get(refs)
    finally:
        ray.shutdown()


def sweep(config: SweepConfig) -> Path:
    """Run ``diffplan sweep`` (module docstring); returns the merged report's path."""
    if config.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {config.workers}")
    root, jobs = read_grid(config.grid, config.out)
    print(f"sweep     {len(jobs)} jobs in {root / 'jobs'}")
    with tqdm(total=len(jobs), unit="job", disable=not config.progress) as bar:
        if config.ray_address:
            records = _on_ray(jobs, config.ray_address, config.workers, bar)
        else:
            records = _on_pool(jobs, config.workers, bar)
    report = write_merged(root, jobs, records)
    failed = [
        job for job, record in zip(jobs, records, strict=True) if record["status"] == "failed"
    ]
    if failed:
        logs = ", ".join(str(job.folder / "sweep.log") for job in failed)
        raise ValueError(
            f"{len(failed)} of {len(jobs)} jobs failed (see {logs}); "
            "fix them and run the sweep again (finished jobs are skipped)"
        )
    return report


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as a CSV file (columns in first-seen order), written atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)


def _datasets(out: Path) -> list[Path]:
    """Dataset directories a job wrote (Minari layout), leaving out train-agent's
    snapshots/ (their replay shards are parts of medium-replay, not datasets of their own)."""
    return [
        path.parent.parent
        for path in sorted(out.rglob("data/metadata.json"))
        if "snapshots" not in path.relative_to(out).parts
    ]


def write_merged(root: Path, jobs: list[Job], records: list[dict[str, Any]]) -> Path:
    """``jobs.csv``, ``results.csv`` (a row per evaluated setting of every results.json),
    ``datasets.csv`` (a row per dataset) and ``report.md`` in ``root``; the report's path."""
    job_rows, result_rows, dataset_rows, documents, sources = [], [], [], [], []
    for job, record in zip(jobs, records, strict=True):
        base = {"method": job.method, "job": job.name, **job.variables}
        job_rows.append({**base, "status": record["status"], "seconds": record.get("seconds"),
                         "folder": str(job.folder)})  # fmt: skip
        out = job.folder / "out"
        if not out.is_dir():
            continue
        for path in sorted(out.rglob("results.json")):
            document, where = read_results(path), str(path.parent.relative_to(out))
            documents.append(document)
            sources.append(f"{job.method} {job.name} {where}")
            for s in document["settings"]:
                low, high = s.get("ci95") or (None, None)
                result_rows.append(
                    {**base, "results": where, "preset": s["preset"], "k": s["k"],
                     "guided": s["guided"], "episodes": s["episodes"],
                     "mean_return": s["mean_return"], "ci95_low": low, "ci95_high": high,
                     "falls": s["falls"], "percent_of_data": s["percent_of_data"],
                     "d4rl_score": s["d4rl_score"]}
                )  # fmt: skip
        for path in _datasets(out):
            info = read_minari_dir(path).info
            task = find_task(info.env_id)
            score = task.normalized_score(info.mean_return) if task else None
            dataset_rows.append(
                {**base, "dataset": str(path.relative_to(out)), "env_id": info.env_id,
                 "episodes": info.num_episodes, "steps": info.num_steps,
                 "mean_return": info.mean_return, "d4rl_score": score}
            )  # fmt: skip
    write_rows(root / "jobs.csv", job_rows)
    write_rows(root / "results.csv", result_rows)
    write_rows(root / "datasets.csv", dataset_rows)
    done = sum(r["status"] != "failed" for r in records)
    lines = [f"# diffplan sweep: {done} of {len(jobs)} jobs done", ""]
    if documents:
        lines += ["## Evaluations", "", results_table(documents, sources)]
    if dataset_rows:
        lines += ["## Datasets", "", "| job | dataset | episodes | steps | mean return | D4RL |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in dataset_rows:
            job = f"{r['method']} {r['job']}"
            score = "—" if r["d4rl_score"] is None else f"{r['d4rl_score']:.1f}"
            lines.append(f"| {job} | {r['dataset']} | {r['episodes']} | {r['steps']} "
                         f"| {r['mean_return']:.1f} | {score} |")  # fmt: skip
    report = root / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"written   {report} (jobs.csv, results.csv, datasets.csv beside it)")
    return report
