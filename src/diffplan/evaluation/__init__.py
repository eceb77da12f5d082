"""Evaluation: closed-loop episodes, the report's metrics, and choosing a checkpoint."""

from diffplan.evaluation.metrics import EpisodeResult, SettingMetrics, summarize

__all__ = ["EpisodeResult", "SettingMetrics", "summarize"]
