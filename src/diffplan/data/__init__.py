"""Data layer: episodes, dataset sources (Minari, D4RL, diffplan) and training windows."""

from diffplan.data.episodes import (
    DatasetError,
    DatasetInfo,
    Episode,
    TrajectoryDataset,
    discounted_returns_to_go,
    make_episode,
)
from diffplan.data.normalizers import Normalizer, NormalizerKind
from diffplan.data.windows import PaddingMode, WindowBatch, WindowDataset, transitions

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "Episode",
    "Normalizer",
    "NormalizerKind",
    "PaddingMode",
    "TrajectoryDataset",
    "WindowBatch",
    "WindowDataset",
    "discounted_returns_to_go",
    "make_episode",
    "transitions",
]
