"""``Planner.from_run``: the two-line API on a miniature finished run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_docs import finished_run  # noqa: F401 - the miniature runs/main fixture

from diffplan import Planner


@pytest.mark.parametrize("preset", ["tracked", "fast"])
def test_predict_returns_actions_within_bounds_for_one_and_a_batch(
    finished_run: Path,  # noqa: F811
    preset: str,
) -> None:
    planner = Planner.from_run(finished_run / "runs" / "main", preset=preset, k=1)
    low, high = planner.planner.execution.action_low, planner.planner.execution.action_high
    rng = np.random.default_rng(0)
    one, state = planner.predict(rng.normal(size=17))
    assert state is None and one.shape == (6,)
    planner.reset()
    batch, _ = planner.predict(rng.normal(size=(3, 17)))
    assert batch.shape == (3, 6)
    for actions in (one, batch):
        assert np.all(actions >= low) and np.all(actions <= high)
    assert planner.plan(rng.normal(size=17)).shape == (planner.planner.generator.horizon, 23)


def test_wrong_observation_shape_and_missing_models_are_refused(
    finished_run: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    planner = Planner.from_run(finished_run / "runs" / "main", preset="fast", k=2)
    with pytest.raises(ValueError, match=r"\(17,\) or \(N, 17\)"):
        planner.predict(np.zeros(5))
    (tmp_path / "diffusion").symlink_to(finished_run / "runs" / "main" / "diffusion")
    with pytest.raises(ValueError, match="train-dynamics --kind inverse"):
        Planner.from_run(tmp_path, preset="tracked")
    with pytest.raises(ValueError, match="choose one of"):
        Planner.from_run(tmp_path, preset="nope")
