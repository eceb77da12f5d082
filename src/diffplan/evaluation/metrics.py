"""The report's metrics, per episode and per evaluation setting.

Per setting, from ``N`` episodes with returns ``R_i`` and lengths ``L_i``:

* mean ± std return;
* V-rate = ``sum R_i / sum L_i`` (reward per step: short episodes, i.e. falls,
  lower the return but not necessarily the V-rate);
* % of data = ``100 * mean R / dataset mean return`` (the report's "normalised score");
* value rate = ``V-rate / dataset V-rate``;
* D4RL score = ``100 * (mean R - ref_min) / (ref_max - ref_min)``;
* falls = episodes that terminated before the time limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from diffplan.data.episodes import DatasetInfo


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluation episode."""

    seed: int
    total_return: float
    length: int
    fell: bool
    """Terminated (e.g. the walker fell) rather than cut by the time limit."""


@dataclass(frozen=True)
class SettingMetrics:
    """Aggregates of one evaluation setting (e.g. one effective window)."""

    episodes: int
    mean_return: float
    std_return: float
    v_rate: float
    percent_of_data: float
    value_rate: float
    d4rl_score: float | None
    falls: int
    mean_length: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(results: Sequence[EpisodeResult], data: DatasetInfo) -> SettingMetrics:
    """Aggregate ``results`` against the training data's ``info`` (module docstring)."""
    if not results:
        raise ValueError("no episodes to summarise")
    returns = np.array([r.total_return for r in results], dtype=np.float64)
    lengths = np.array([r.length for r in results], dtype=np.float64)
    if np.any(lengths <= 0):
        raise ValueError("episode lengths must be positive")
    mean_return = float(returns.mean())
    v_rate = float(returns.sum() / lengths.sum())
    d4rl = None
    if data.ref_min_score is not None and data.ref_max_score is not None:
        d4rl = (
            100.0 * (mean_return - data.ref_min_score) / (data.ref_max_score - data.ref_min_score)
        )
    return SettingMetrics(
        episodes=len(results),
        mean_return=mean_return,
        std_return=float(returns.std()),
        v_rate=v_rate,
        percent_of_data=100.0 * mean_return / data.mean_return,
        value_rate=v_rate / data.v_rate,
        d4rl_score=d4rl,
        falls=sum(r.fell for r in results),
        mean_length=float(lengths.mean()),
    )
