"""Training: typed configs, the loop (EMA, logging, DDP), checkpoints and their loading."""

from diffplan.training.commands import train, train_value
from diffplan.training.config import (
    OptimConfig,
    TrainConfig,
    TrainValueConfig,
    UNetConfig,
    ValueNetConfig,
    WindowConfig,
)
from diffplan.training.loading import build_network, load_generator

__all__ = [
    "OptimConfig",
    "TrainConfig",
    "TrainValueConfig",
    "UNetConfig",
    "ValueNetConfig",
    "WindowConfig",
    "build_network",
    "load_generator",
    "train",
    "train_value",
]
