"""diffplan: planning with diffusion models for offline reinforcement learning.

Pipeline: ``data`` (episodes -> windows) -> ``models`` (networks) -> ``diffusion``
(schedules, samplers) -> ``planning`` -> ``evaluation`` -> report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffplan")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["Planner", "__version__"]


def __getattr__(name: str) -> object:
    """``diffplan.Planner``, imported on first use (torch and gymnasium load then)."""
    if name == "Planner":
        from diffplan.planning.policy import Planner

        return Planner
    raise AttributeError(f"module 'diffplan' has no attribute {name!r}")
