"""Planning: receding-horizon control with a trajectory diffusion model, value guidance."""

from diffplan.planning.config import PlanningConfig
from diffplan.planning.guides import GradientScaling, GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner, WarmStart

__all__ = [
    "DiffusionPlanner",
    "GradientScaling",
    "GuideConfig",
    "PlanningConfig",
    "ValueGuide",
    "WarmStart",
]
