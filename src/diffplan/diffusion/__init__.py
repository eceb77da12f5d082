"""Diffusion over windows: noise schedules, the DDPM scheduler, masks, loss and sampling."""

from diffplan.diffusion.ddpm import DDPMScheduler, PredictionType, SamplerMethod, StepOutput
from diffplan.diffusion.loss import denoising_loss
from diffplan.diffusion.masks import impose, loss_weights, state_mask, state_values
from diffplan.diffusion.sampling import (
    Guide,
    SamplerConfig,
    TrajectoryGenerator,
    sample_windows,
)
from diffplan.diffusion.schedules import ScheduleKind, make_betas

__all__ = [
    "DDPMScheduler",
    "Guide",
    "PredictionType",
    "SamplerConfig",
    "SamplerMethod",
    "ScheduleKind",
    "StepOutput",
    "TrajectoryGenerator",
    "denoising_loss",
    "impose",
    "loss_weights",
    "make_betas",
    "sample_windows",
    "state_mask",
    "state_values",
]
