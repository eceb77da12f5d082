"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs in a fresh interpreter inside a folder laid out like a finished
``diffplan run`` (tiny models trained for a few steps on random Walker2d-shaped data,
a results.json of hand-made episodes, a D4RL-layout file). A block preceded by
``<!-- skip-test: reason -->`` is not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import synthetic_dataset

from diffplan.data import TrajectoryDataset
from diffplan.data.d4rl_format import write_d4rl_hdf5
from diffplan.data.minari_format import write_minari_dir
from diffplan.evaluation.metrics import EpisodeResult, summarize
from diffplan.evaluation.report import write_run_report
from diffplan.evaluation.results import SettingResult
from diffplan.training import (
    OptimConfig,
    TrainConfig,
    TrainDynamicsConfig,
    TrainValueConfig,
    train,
    train_dynamics,
    train_value,
)
from diffplan.training.config import DynamicsNetConfig, UNetConfig, ValueNetConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- skip-test: [^>]+-->\s*\n)?```python\n(.*?)```", re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """``(page:line, code)`` of every ```python block not marked skip-test."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if match.group(1) is None:
                line = text.count("\n", 0, match.start()) + 1
                blocks.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return blocks


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``runs/main`` as ``diffplan run`` leaves it, in miniature."""
    root = tmp_path_factory.mktemp("docs")
    main = root / "runs" / "main"
    walker = synthetic_dataset(lengths=(30, 30, 30), obs_dim=17, act_dim=6)
    dataset = TrajectoryDataset(list(walker), env_id="Walker2d-v5", name="random-walker")
    write_minari_dir(dataset, main / "data")
    write_d4rl_hdf5(dataset, root / "walker2d_expert-v2.hdf5")
    optim = OptimConfig(steps=4, batch_size=8, save_every=4, ema_start=2, ema_every=1)
    common = {"dataset": str(main / "data"), "progress": False, "threads": 1, "optim": optim}
    small = {"dim": 8, "dim_mults": (1, 2)}
    train(TrainConfig(out=main / "diffusion", model=UNetConfig(**small), **common))
    train_value(
        TrainValueConfig(out=main / "value", model=ValueNetConfig(**small, hidden=16), **common)
    )
    train_dynamics(
        TrainDynamicsConfig(
            out=main / "inverse-dynamics", model=DynamicsNetConfig(hidden=16), **common
        )
    )
    episodes = [EpisodeResult(i, 100.0 + i, 30, False) for i in range(3)]
    metrics = summarize(episodes, dataset.info)
    write_run_report(
        main,
        {"report": [SettingResult("k=1", 1, False, episodes, metrics, 1.0)]},
        dataset.info,
        timings={"evaluate": 1.0},
        commands=["diffplan run"],
    )
    return root


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[w for w, _ in python_blocks()])
def test_python_block_runs(finished_run: Path, where: str, code: str):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=finished_run,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"


def test_every_page_is_scanned():
    assert len(python_blocks()) >= 3  # README's and docs' examples are found


def test_relative_links_point_to_files():
    pages = [*PAGES, *sorted((ROOT / "docs" / "notes").glob("*.md"))]
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in pages
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
        if not target.startswith("http") and not (page.parent / target).exists()
    ]
    assert not broken


def test_readme_first_screen():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 10_000
    first = "\n".join(text.splitlines()[:40])
    assert first.count("```bash") == 2
    assert "| k | tracked | report | bc | seed report |" in first and "| 7 guided |" in first
    for private in ("../shared", "/work/", "issue "):
        assert private not in text, private


RESEARCH = ROOT / "research"


@pytest.mark.parametrize("script", sorted(RESEARCH.glob("*.py")), ids=lambda p: p.name)
def test_research_probe_imports(script: Path):
    """The research probes import what the package still has (they lagged a module move
    once, unnoticed) and answer --help; recipe_table takes positional folders only."""
    # recipe_table.py is imported only ("probe"): its main() needs run folders
    run_name = "probe" if script.name == "recipe_table.py" else "__main__"
    code = (
        f"import runpy, sys; sys.argv = [{str(script)!r}, '--help']; "
        f"runpy.run_path({str(script)!r}, run_name={run_name!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=RESEARCH,  # tracking_check imports plan_drift from this folder
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(RESEARCH), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_research_readme_lists_every_script():
    listed = (RESEARCH / "README.md").read_text()
    scripts = [p.name for p in RESEARCH.iterdir() if p.suffix in (".py", ".sh", ".yaml")]
    assert scripts and not [name for name in scripts if f"`{name}`" not in listed]
