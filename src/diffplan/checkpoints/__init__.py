"""Checkpoints: writing and reading them (:mod:`.store`, JSON + safetensors, no pickles) and
rebuilding their networks (:mod:`.loading`)."""

from diffplan.checkpoints.loading import (
    Loaded,
    build_network,
    load_diffusion,
    load_generator,
    load_network,
    load_value_network,
)

__all__ = [
    "Loaded",
    "build_network",
    "load_diffusion",
    "load_generator",
    "load_network",
    "load_value_network",
]
