"""Planning: receding-horizon control with a trajectory diffusion model, value guidance,
plan selection and inverse-dynamics actions."""

from diffplan.planning.config import ConsistencyConfig, ExperimentalPlanning, PlanningConfig
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.guides import GradientScaling, GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner, WarmStart

__all__ = [
    "ActionsFromStates",
    "ConsistencyConfig",
    "DiffusionPlanner",
    "ExperimentalPlanning",
    "ForwardConsistency",
    "GradientScaling",
    "GuideConfig",
    "PlanningConfig",
    "ValueGuide",
    "WarmStart",
]
