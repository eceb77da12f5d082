"""The report's metrics, per episode and per evaluation setting.

Per setting, from ``N`` episodes with returns ``R_i`` and lengths ``L_i``:

* mean ± std return;
* V-rate = ``sum R_i / sum L_i`` (reward per step: short episodes, i.e. falls,
  lower the return but not necessarily the V-rate);
* % of data = ``100 * mean R / dataset mean return`` (the report's "normalised score");
* value rate = ``V-rate / dataset V-rate``;
* D4RL score = ``100 * (mean R - ref_min) / (ref_max - ref_min)``;
* falls = episodes that terminated before the time limit;
* 95 % CI of the mean return: percentile bootstrap over episodes (:func:`bootstrap_ci`;
  None with a single episode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap

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
    ci_low: float | None = None
    """Lower end of the 95 % bootstrap CI of the mean return (None: one episode)."""
    ci_high: float | None = None
    """Upper end of that CI."""

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap ``confidence`` interval of the mean of ``values`` (N,) >= 2.

    ``resamples`` resamples with replacement from ``np.random.default_rng(seed)``: the same
    values and seed give the same interval.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or len(data) < 2:
        raise ValueError(
            f"a bootstrap CI needs at least 2 values in a flat list, got shape {data.shape}; "
            "evaluate more episodes (or pool more runs)"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not np.all(np.isfinite(data)):
        raise ValueError("a bootstrap CI needs finite values; got NaN or inf")
    if np.all(data == data[0]):  # no spread: scipy would warn of a degenerate distribution
        return float(data[0]), float(data[0])
    interval = bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


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
    ci = bootstrap_ci(returns) if len(returns) > 1 else (None, None)
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
        ci_low=ci[0],
        ci_high=ci[1],
    )
