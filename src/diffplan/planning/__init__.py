"""Planning: receding-horizon control with a trajectory diffusion model, value guidance,
plan selection and inverse-dynamics actions."""

from diffplan.planning.config import ConsistencyConfig, ExperimentalPlanning, PlanningConfig
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.execution import Execution
from diffplan.planning.guides import GradientScaling, GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner
from diffplan.planning.proposal import Proposal, WarmStart
from diffplan.planning.selection import Selection
from diffplan.planning.smoothing import Smoothing

__all__ = [
    "ActionsFromStates",
    "ConsistencyConfig",
    "DiffusionPlanner",
    "Execution",
    "ExperimentalPlanning",
    "ForwardConsistency",
    "GradientScaling",
    "GuideConfig",
    "PlanningConfig",
    "Proposal",
    "Selection",
    "Smoothing",
    "ValueGuide",
    "WarmStart",
]
