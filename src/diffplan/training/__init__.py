"""Training of the diffusion model, value network and dynamics models: typed configs and
the loop (EMA, logging, DDP); checkpoints are :mod:`diffplan.checkpoints`."""

from diffplan.training.commands import train, train_dynamics, train_value
from diffplan.training.config import (
    OptimConfig,
    TrainConfig,
    TrainDynamicsConfig,
    TrainValueConfig,
    UNetConfig,
    ValueNetConfig,
    WindowConfig,
)

__all__ = [
    "OptimConfig",
    "TrainConfig",
    "TrainDynamicsConfig",
    "TrainValueConfig",
    "UNetConfig",
    "ValueNetConfig",
    "WindowConfig",
    "train",
    "train_dynamics",
    "train_value",
]
