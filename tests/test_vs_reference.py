"""benchmarks/vs_reference.py's smoke run against the reference Diffuser in ../shared."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not (SHARED / "reference" / "load_reference.py").is_file()
    or importlib.util.find_spec("einops") is None,
    reason="needs ../shared/reference and einops",
)
def test_quick_run_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vs_reference.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "U-Net 1,001,399 parameters in both" in out
    for figure in ("train step, batch", "plan, batch 1", "guided plan, batch", "closed-loop"):
        line = next(line for line in out.splitlines() if line.startswith(figure))
        ref_ms, our_ms = (float(v) for v in line.split()[-5:-3])
        assert ref_ms > 0 and our_ms > 0
