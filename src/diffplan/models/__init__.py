"""Networks over ``(B, H, D)`` windows: the temporal U-Net denoiser and the value network."""

from diffplan.models.unet import TemporalUnet, check_horizon
from diffplan.models.value import ValueNetwork

__all__ = ["TemporalUnet", "ValueNetwork", "check_horizon"]
