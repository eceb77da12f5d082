"""Networks: the temporal U-Net denoiser and the value network over ``(B, H, D)`` windows,
and one-step dynamics models over transitions."""

from diffplan.models.dynamics import ForwardDynamics, InverseDynamics
from diffplan.models.unet import TemporalUnet, check_horizon
from diffplan.models.value import ValueNetwork

__all__ = [
    "ForwardDynamics",
    "InverseDynamics",
    "TemporalUnet",
    "ValueNetwork",
    "check_horizon",
]
