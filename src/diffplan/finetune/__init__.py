"""Fine-tuning a trained diffusion planner with PPO in the environment (DPPO, Ren et al. 2024):
the denoising chain as a Gaussian policy (:mod:`~diffplan.finetune.chain`), closed-loop
collection (:mod:`~diffplan.finetune.rollout`), GAE and the clipped update
(:mod:`~diffplan.finetune.ppo`), the pretrained model as a prior
(:mod:`~diffplan.finetune.prior`) and ``diffplan finetune`` (:mod:`~diffplan.finetune.command`)."""

from diffplan.finetune.chain import ChainSample, DenoisingChain, gaussian_log_prob
from diffplan.finetune.command import finetune
from diffplan.finetune.config import (
    ChainConfig,
    FinetuneConfig,
    OODPenaltyConfig,
    PPOConfig,
    RegularizerConfig,
)
from diffplan.finetune.ppo import Critic, gae, ppo_update
from diffplan.finetune.rollout import Collector, Decisions, Rollout

__all__ = [
    "ChainConfig",
    "ChainSample",
    "Collector",
    "Critic",
    "Decisions",
    "DenoisingChain",
    "FinetuneConfig",
    "OODPenaltyConfig",
    "PPOConfig",
    "RegularizerConfig",
    "Rollout",
    "finetune",
    "gae",
    "gaussian_log_prob",
    "ppo_update",
]
