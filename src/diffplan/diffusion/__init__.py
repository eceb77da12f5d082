"""Diffusion over windows: noise schedules, the DDPM scheduler, masks, loss, sampling and
classifier-free guidance."""

from diffplan.diffusion.ddpm import DDPMScheduler, PredictionType, SamplerMethod, StepOutput
from diffplan.diffusion.guidance import ClassifierFreeGuidance, ReturnGuidanceConfig
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
    "ClassifierFreeGuidance",
    "DDPMScheduler",
    "Guide",
    "PredictionType",
    "ReturnGuidanceConfig",
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
