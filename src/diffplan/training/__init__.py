"""Training of the diffusion model, value network and dynamics models: typed configs,
the loop (EMA, logging, DDP), checkpoints and their loading."""

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
from diffplan.training.loading import build_network, load_generator

__all__ = [
    "OptimConfig",
    "TrainConfig",
    "TrainDynamicsConfig",
    "TrainValueConfig",
    "UNetConfig",
    "ValueNetConfig",
    "WindowConfig",
    "build_network",
    "load_generator",
    "train",
    "train_dynamics",
    "train_value",
]
