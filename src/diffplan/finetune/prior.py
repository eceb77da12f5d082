"""The pretrained model as a prior: a regulariser and an out-of-distribution penalty.

* :class:`DenoisingRegularizer`: the original denoising loss (Algorithm 1.1) of the model
  being fine-tuned on the offline dataset's windows, added to the PPO loss; it keeps the
  model a model of the data's trajectories.
* :class:`OODPenalty`: the frozen pretrained model's denoising error on the states and
  actions a decision executed, at a fixed diffusion step; subtracted from the decision's
  reward, it steers the policy away from windows unlike the data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffplan.data.episodes import TrajectoryDataset
from diffplan.data.windows import WindowDataset
from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.loss import denoising_loss
from diffplan.diffusion.masks import loss_weights
from diffplan.diffusion.sampling import TrajectoryGenerator


class DenoisingRegularizer:
    """The denoising loss on windows of ``dataset``, shaped like the model's training data.

    Args:
        dataset: the offline data; it must be of ``env_id`` and the model's dims.
        generator: the model being fine-tuned (its normaliser, horizon, scheduler).
        train_config: the diffusion checkpoint's training config (padding, loss weights).
        env_id: the environment the model plans in.
        batch_size: windows per call.
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        generator: TrajectoryGenerator,
        train_config: dict[str, Any],
        env_id: str,
        *,
        batch_size: int,
    ) -> None:
        dims = (dataset.obs_dim, dataset.act_dim)
        if dataset.env_id != env_id or dims != (generator.obs_dim, generator.act_dim):
            raise ValueError(
                f"--regularizer.dataset {dataset.name} is of {dataset.env_id} (obs {dims[0]}, "
                f"act {dims[1]}) but the model plans in {env_id} (obs {generator.obs_dim}, act "
                f"{generator.act_dim}); give a dataset of the model's environment"
            )
        self.scheduler, self.device, self.batch_size = (
            generator.scheduler,
            generator.device,
            batch_size,
        )
        self.windows = WindowDataset(
            dataset,
            generator.horizon,
            normalizer=generator.normalizer,
            padding=train_config["windows"]["padding"],
        )
        self.fixed = generator.fixed.to(self.device)
        self.weights = loss_weights(
            generator.horizon,
            generator.obs_dim,
            generator.act_dim,
            action_weight=train_config["action_weight"],
            discount=train_config["loss_discount"],
        ).to(self.device)

    def __call__(self, model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """The scalar loss of ``model`` on ``batch_size`` windows, steps and noise drawn from
        the CPU ``generator``."""
        batch_size = self.batch_size
        indices = torch.randint(len(self.windows), (batch_size,), generator=generator)
        t = torch.randint(self.scheduler.num_train_timesteps, (batch_size,), generator=generator)
        shape = (batch_size, self.windows.horizon, self.windows.transition_dim)
        noise = torch.randn(shape, generator=generator)
        batch = self.windows.get_batch(indices).to(self.device)
        return denoising_loss(
            model,
            self.scheduler,
            batch.window,
            batch.mask,
            t.to(self.device),
            noise.to(self.device),
            fixed=self.fixed,
            weights=self.weights,
        )


class OODPenalty:
    """``weight`` times the frozen ``model``'s denoising error at step ``step`` on executed
    windows, per decision (the error of its executed rows, scaled to a whole window).

    Args:
        model: the pretrained denoiser; it is frozen here.
        scheduler: its noise process.
        fixed: ``(H, D)`` its inpainting mask.
        weight: penalty per unit of error.
        step: the diffusion step ``t`` the windows are noised to.
    """

    def __init__(
        self,
        model: nn.Module,
        scheduler: DDPMScheduler,
        fixed: torch.Tensor,
        *,
        weight: float,
        step: int,
    ) -> None:
        last = scheduler.num_train_timesteps - 1
        if not 0 <= step <= last:
            raise ValueError(f"--ood.step must be in 0..{last} (the model's steps), got {step}")
        self.model = model.eval().requires_grad_(False)
        self.scheduler, self.fixed, self.weight, self.step = scheduler, fixed, weight, step
        self.weights = torch.ones(fixed.shape, device=fixed.device)

    @torch.no_grad()
    def __call__(
        self, windows: torch.Tensor, valid: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Penalties ``(n,)`` of normalised windows ``(n, H, D)`` whose rows ``valid (n, H)``
        were executed; the noise comes from ``generator`` (on the windows' device)."""
        noise = torch.randn(
            windows.shape, generator=generator, device=windows.device, dtype=windows.dtype
        )
        t = torch.full((1,), self.step, device=windows.device, dtype=torch.long)
        # denoising_loss averages over its batch: each window is a batch of its own.
        errors = torch.stack(
            [
                denoising_loss(
                    self.model,
                    self.scheduler,
                    window[None],
                    rows[None],
                    t,
                    eps[None],
                    fixed=self.fixed,
                    weights=self.weights,
                )
                for window, rows, eps in zip(windows, valid, noise, strict=True)
            ]
        )
        return self.weight * errors * valid.shape[1] / valid.sum(dim=1)
