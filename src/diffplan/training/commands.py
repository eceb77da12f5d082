"""``diffplan train``, ``train-value``, ``train-dynamics``: data -> network -> :class:`Trainer`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.loading import build_network
from diffplan.data.normalizers import Normalizer, NormalizerKind
from diffplan.data.sources import load_dataset
from diffplan.data.windows import WindowBatch, WindowDataset
from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.loss import denoising_loss, value_loss
from diffplan.diffusion.masks import loss_weights, state_mask
from diffplan.models.dynamics import DYNAMICS, transition_loss
from diffplan.outputs import output_folder
from diffplan.training.config import (
    RunOptions,
    TrainConfig,
    TrainDynamicsConfig,
    TrainValueConfig,
    WindowConfig,
)
from diffplan.training.trainer import LossFn, Process, Trainer, start_process, write_run_config

# Settings that may change when resuming; all others must match the checkpoint.
RESUMABLE = ("dataset", "out", "resume", "progress", "threads", "device", "optim")


def resume_point(config: RunOptions) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to mix runs."""
    found = ckpt.checkpoints(config.out)
    if config.resume and not found:
        raise FileNotFoundError(f"--resume: {config.out} holds no checkpoint to resume from")
    if found and not config.resume:
        raise FileExistsError(
            f"{config.out} already holds checkpoints; pass --resume to continue it "
            "or choose another --out"
        )
    return found[-1] if found else None


def fingerprint(config: RunOptions, windows: WindowDataset) -> dict[str, Any]:
    """Every setting that shapes the network or what it learns, plus the data's dims."""
    settings = {k: v for k, v in asdict(config).items() if k not in RESUMABLE}
    windows_settings = settings.get("windows", {})
    if not windows_settings.get("drop_terminated", True):
        # runs that keep every episode keep the fingerprint of versions without the option
        del windows_settings["drop_terminated"]
    return {**settings, "obs_dim": windows.obs_dim, "act_dim": windows.act_dim}


def make_windows(
    config: RunOptions, shape: WindowConfig, resume_from: Path | None, **kwargs: Any
) -> WindowDataset:
    """Windows of ``config.dataset`` shaped by ``shape``; a resumed run keeps its
    checkpoint's normaliser."""
    dataset = load_dataset(config.dataset)
    normalizer = ckpt.read_meta(resume_from).normalizer if resume_from else shape.normalizer
    return WindowDataset(
        dataset,
        shape.horizon,
        normalizer=normalizer,
        padding=shape.padding,
        drop_terminated=shape.drop_terminated,
        **kwargs,
    )


@contextmanager
def training_process(config: RunOptions, command: str) -> Iterator[Process]:
    """This process (:func:`start_process`) holding ``config.out`` for ``diffplan command``
    (:func:`~diffplan.outputs.output_folder`) after checking its options; under torchrun it
    leaves the group at the end."""
    config.validate()
    process = start_process(config.device, config.threads)
    distributed = process.world_size > 1
    try:
        with output_folder(config.out, command, existing="reuse"):
            yield process
        if distributed:
            # Every rank waits here before the group goes: a rank that tears gloo down while
            # its peer is still on the last collective aborts the peer ("terminate called
            # without an active exception", rank 1 SIGABRT).
            dist.barrier()
    finally:
        if distributed:
            dist.destroy_process_group()


def fit_targets(
    windows: WindowDataset, resume_from: Path | None, kind: NormalizerKind
) -> Normalizer:
    """The target normaliser of a resumed run, else a ``kind`` one fitted on all windows'
    targets (value networks: gaussian; return conditioning: minmax, -1 the lowest return,
    1 the highest)."""
    saved = ckpt.read_meta(resume_from).targets if resume_from else None
    return saved or Normalizer.fit(windows.values[:, None].numpy(), kind)


def run_training(
    config: RunOptions,
    process: Process,
    resume_from: Path | None,
    *,
    kind: str,
    architecture: dict[str, Any],
    loss_fn: LossFn,
    windows: WindowDataset,
    num_timesteps: int,
    fingerprint: dict[str, Any],
    targets: Normalizer | None = None,
) -> list[tuple[int, float]]:
    """Build the network (seeded) and the :class:`Trainer`, restore ``resume_from`` if
    given, record the config, fit; checkpoints record ``kind``, ``architecture``,
    ``fingerprint``, the windows' normaliser and dataset, and ``targets``."""
    torch.manual_seed(config.seed)
    model = build_network(architecture).to(process.device)
    meta = ckpt.CheckpointMeta(
        kind=kind,
        architecture=architecture,
        fingerprint=fingerprint,
        config=asdict(config),
        normalizer=windows.normalizer,
        dataset=windows.info.to_dict(),
        targets=targets,
    )
    trainer = Trainer(
        model,
        loss_fn,
        windows,
        num_timesteps=num_timesteps,
        optim=config.optim,
        out=config.out,
        seed=config.seed,
        meta=meta,
        process=process,
        progress=config.progress,
    )
    if resume_from is not None:
        trainer.restore(resume_from)
    if process.is_main:
        write_run_config(config.out, asdict(config), process)
    return trainer.fit()


def train(config: TrainConfig) -> list[tuple[int, float]]:
    """Train the diffusion model; returns the logged ``(step, loss)`` pairs."""
    with training_process(config, "train") as process:
        resume_from = resume_point(config)
        conditioned = config.returns.enabled
        returns_kwargs = (
            {
                "discount": config.returns.discount,
                "termination_penalty": config.returns.termination_penalty,
            }
            if conditioned
            else {}
        )
        windows = make_windows(config, config.windows, resume_from, **returns_kwargs)
        horizon, obs_dim, act_dim = windows.horizon, windows.obs_dim, windows.act_dim
        architecture: dict[str, Any] = {
            "network": "TemporalUnet",
            "horizon": horizon,
            "transition_dim": obs_dim + act_dim,
            "dim": config.model.dim,
            "dim_mults": list(config.model.dim_mults),
            "attention": config.model.attention,
        }
        targets = None
        if conditioned:
            architecture["returns_condition"] = True
            targets = fit_targets(windows, resume_from, "minmax")
        scheduler = DDPMScheduler(
            config.diffusion_steps,
            schedule=config.schedule,
            prediction_type=config.prediction,
            clip_sample=config.clip_sample,
        ).to(process.device)
        fixed = state_mask(horizon, obs_dim, act_dim).to(process.device)
        weights = loss_weights(
            horizon,
            obs_dim,
            act_dim,
            action_weight=config.action_weight,
            discount=config.loss_discount,
        ).to(process.device)

        def loss_fn(
            net: torch.nn.Module, batch: WindowBatch, t: torch.Tensor, noise: torch.Tensor
        ) -> torch.Tensor:
            denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = net
            if targets is not None:
                # Condition on the window's return, dropped with probability `dropout` (the
                # CPU generator: its state is saved in checkpoints, so resuming repeats it).
                returns = targets.normalize(batch.value[:, None])[:, 0]
                keep = torch.rand(len(returns)) >= config.returns.dropout
                denoiser = partial(net, returns=returns, keep=keep.to(returns))
            return denoising_loss(
                denoiser,
                scheduler,
                batch.window,
                batch.mask,
                t,
                noise,
                fixed=fixed,
                weights=weights,
            )

        return run_training(
            config,
            process,
            resume_from,
            kind="diffusion",
            architecture=architecture,
            loss_fn=loss_fn,
            windows=windows,
            num_timesteps=config.diffusion_steps,
            fingerprint=diffusion_fingerprint(config, windows),
            targets=targets,
        )


def diffusion_fingerprint(config: TrainConfig, windows: WindowDataset) -> dict[str, Any]:
    """:func:`fingerprint`; runs without return conditioning keep the fingerprint of
    diffplan versions before it, so that their checkpoints still resume."""
    found = fingerprint(config, windows)
    if not config.returns.enabled:
        del found["returns"]
    return found


def train_value(config: TrainValueConfig) -> list[tuple[int, float]]:
    """Train the value network; returns the logged ``(step, loss)`` pairs."""
    with training_process(config, "train-value") as process:
        resume_from = resume_point(config)
        windows = make_windows(
            config,
            config.windows,
            resume_from,
            discount=config.discount,
            termination_penalty=config.termination_penalty,
        )
        horizon, obs_dim, act_dim = windows.horizon, windows.obs_dim, windows.act_dim
        targets = fit_targets(windows, resume_from, "gaussian")
        scheduler = DDPMScheduler(config.diffusion_steps, schedule=config.schedule).to(
            process.device
        )
        fixed = state_mask(horizon, obs_dim, act_dim).to(process.device)

        def loss_fn(
            net: torch.nn.Module, batch: WindowBatch, t: torch.Tensor, noise: torch.Tensor
        ) -> torch.Tensor:
            target = targets.normalize(batch.value[:, None])[:, 0]
            return value_loss(net, scheduler, batch.window, target, t, noise, fixed=fixed)

        return run_training(
            config,
            process,
            resume_from,
            kind="value",
            architecture={
                "network": "ValueNetwork",
                "horizon": horizon,
                "transition_dim": obs_dim + act_dim,
                "dim": config.model.dim,
                "dim_mults": list(config.model.dim_mults),
                "hidden": config.model.hidden,
            },
            loss_fn=loss_fn,
            windows=windows,
            num_timesteps=config.diffusion_steps,
            fingerprint=fingerprint(config, windows),
            targets=targets,
        )


def recorded_unresolved_noise(config: TrainDynamicsConfig, resume_from: Path | None) -> bool:
    """Whether ``config`` resumes, without --goal-noise, a run that an earlier diffplan wrote
    with ``goal_noise: null`` (the task's default then too); its fingerprint keeps the null."""
    if resume_from is None or config.goal_noise is not None:
        return False
    recorded = ckpt.read_meta(resume_from).fingerprint
    return "goal_noise" in recorded and recorded["goal_noise"] is None


def train_dynamics(config: TrainDynamicsConfig) -> list[tuple[int, float]]:
    """Train a dynamics model on consecutive steps (an inverse one with ``reach`` M: on
    steps up to M apart); returns the logged ``(step, loss)`` pairs."""
    with training_process(config, "train-dynamics") as process:
        resume_from = resume_point(config)
        # Windows without padding: every (s_t, a_t, s_t+1 .. s_t+reach) inside an episode.
        pairs = WindowConfig(horizon=config.reach + 1, normalizer=config.normalizer, padding="none")
        windows = make_windows(config, pairs, resume_from)
        goal_noise = config.noise_on_goal(windows.info.env_id)
        if not recorded_unresolved_noise(config, resume_from):
            # written into config.json and the fingerprint: a later change to the task
            # table cannot resume this model under another noise
            config = replace(config, goal_noise=goal_noise)
        obs_dim, kind = windows.obs_dim, config.kind

        def loss_fn(
            net: torch.nn.Module, batch: WindowBatch, t: torch.Tensor, noise: torch.Tensor
        ) -> torch.Tensor:
            return transition_loss(net, kind, batch.window, obs_dim, goal_noise)

        return run_training(
            config,
            process,
            resume_from,
            kind=f"{kind}-dynamics",
            architecture={
                "network": DYNAMICS[kind].__name__,
                "obs_dim": obs_dim,
                "act_dim": windows.act_dim,
                "hidden": config.model.hidden,
                "layers": config.model.layers,
                **({"reach": config.reach} if config.reach > 1 else {}),
            },
            loss_fn=loss_fn,
            windows=windows,
            num_timesteps=1,  # no diffusion: the drawn steps and noise go unused
            fingerprint=fingerprint(config, windows),
        )
