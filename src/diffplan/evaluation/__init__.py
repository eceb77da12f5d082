"""Evaluation: closed-loop episodes and the report's metrics."""

from diffplan.evaluation.metrics import EpisodeResult, SettingMetrics, summarize

__all__ = ["EpisodeResult", "SettingMetrics", "summarize"]
