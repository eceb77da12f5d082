"""Typed options of ``diffplan train``, ``train-value`` and ``train-dynamics``.

Every field's docstring is its ``--help`` text. Defaults follow the report where
it says (``H = 8``) and the original Diffuser's locomotion config otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from diffplan.data.normalizers import NormalizerKind
from diffplan.data.windows import PaddingMode
from diffplan.diffusion.ddpm import PredictionType
from diffplan.diffusion.schedules import ScheduleKind
from diffplan.models.dynamics import DynamicsKind
from diffplan.runtime import DeviceChoice
from diffplan.tasks import find_task


def require(ok: bool, option: str, value: object, wanted: str) -> None:
    """Raise ``ValueError`` naming ``option``, its ``value`` and what it must be, unless ``ok``."""
    if not ok:
        raise ValueError(f"{option} must be {wanted}, got {value}")


@dataclass
class UNetConfig:
    """Temporal U-Net denoiser."""

    dim: int = 32
    """Base channel width (a multiple of 8); level i has dim * dim_mults[i] channels."""
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    """Width multipliers, one per resolution level; the horizon must be divisible by
    2**(len(dim_mults) - 1)."""
    attention: bool = False
    """Add self-attention along the horizon at every level (off in Diffuser's locomotion runs)."""


@dataclass
class ReturnConditionConfig:
    """Return conditioning for classifier-free guidance (Decision Diffuser)."""

    enabled: bool = False
    """Condition the denoiser on each window's return-to-go (evaluate then guides toward a
    target return: --planning.experimental.returns.*)."""
    dropout: float = 0.25
    """Probability that a training window's return is dropped (the unconditional model)."""
    discount: float = 0.99
    """Discount of the return-to-go the denoiser is conditioned on."""
    termination_penalty: float = -100.0
    """Added to the last reward of episodes that terminated (fell)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming an option out of range.

        The commands call their config's ``validate()`` before any work (not
        ``__post_init__``: tyro would print its errors as a box, not as one line)."""
        if not 0 <= self.dropout < 1:
            raise ValueError(f"return condition dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ValueNetConfig:
    """Value network: the U-Net's down path and an MLP head."""

    dim: int = 32
    """Base channel width (a multiple of 8)."""
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    """Width multipliers of the down path, one per level."""
    hidden: int = 256
    """Width of the MLP head."""


@dataclass
class OptimConfig:
    """Optimisation loop, EMA, logging and checkpointing."""

    steps: int = 1_000_000
    """Total optimiser steps (a resumed run continues up to this number)."""
    batch_size: int = 32
    """Windows per step, summed over all processes under torchrun."""
    lr: float = 2e-4
    """Adam learning rate."""
    grad_clip: float | None = None
    """Clip the gradient's global norm to this value; None: no clipping."""
    ema_decay: float = 0.995
    """Decay of the EMA of the weights (used for sampling)."""
    ema_start: int = 2000
    """Before this step the EMA is reset to the live weights instead of averaged."""
    ema_every: int = 10
    """Update the EMA every this many steps."""
    log_every: int = 100
    """Write the mean loss of the last this-many steps to metrics.csv and TensorBoard."""
    save_every: int = 10_000
    """Write a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    heldout_windows: int = 256
    """Windows held out of training (a seeded draw, at most a tenth of them); their loss is
    logged every log_every steps as heldout_loss."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming an option out of range (see ``ReturnConditionConfig``)."""
        for name in ("steps", "batch_size", "log_every", "save_every", "keep_checkpoints"):
            value = getattr(self, name)
            require(value >= 1, f"--optim.{name.replace('_', '-')}", value, ">= 1")
        require(self.ema_every >= 1, "--optim.ema-every", self.ema_every, ">= 1")
        require(self.ema_start >= 0, "--optim.ema-start", self.ema_start, ">= 0")
        require(self.heldout_windows >= 0, "--optim.heldout-windows", self.heldout_windows, ">= 0")
        require(
            math.isfinite(self.lr) and self.lr > 0, "--optim.lr", self.lr, "a finite number > 0"
        )
        require(0 <= self.ema_decay <= 1, "--optim.ema-decay", self.ema_decay, "in [0, 1]")
        if self.grad_clip is not None:
            require(
                math.isfinite(self.grad_clip) and self.grad_clip > 0,
                "--optim.grad-clip",
                self.grad_clip,
                "a finite number > 0 (or None)",
            )


@dataclass
class WindowConfig:
    """How episodes become training windows."""

    horizon: int = 8
    """Window length H (the report: 8; the original paper: 32)."""
    normalizer: NormalizerKind = "gaussian"
    """Per-dimension normalisation of the windows."""
    padding: PaddingMode = "edge"
    """Filling of windows that run past an episode's end (padded rows don't count in losses)."""
    drop_terminated: bool = False
    """Train only on the episodes that did not terminate (fall), so that no window shows a
    fall; the normaliser is still fitted on every episode."""


@dataclass
class RunOptions:
    """Options shared by every training command: data, run directory, device, loop."""

    dataset: str
    """Dataset: a diffplan/Minari dataset directory, a D4RL .hdf5 file or a Minari dataset id."""
    out: Path = Path("runs/diffusion")
    """Run directory: config.json, metrics.csv, tensorboard/, checkpoints/."""
    seed: int = 0
    """Seed of the initial weights and of every batch, diffusion step and noise draw."""
    device: DeviceChoice = "auto"
    """auto: CUDA if available, else CPU."""
    resume: bool = False
    """Continue from the latest checkpoint in --out (same model and data settings required)."""
    progress: bool = True
    """Show a progress bar."""
    threads: int | None = None
    """CPU threads of torch (None: torch's default). Use 1 on a busy machine: threads
    competing for cores make training many times slower."""
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming an option out of range (see ``ReturnConditionConfig``)."""
        if self.threads is not None:
            require(self.threads >= 1, "--threads", self.threads, ">= 1 (or left out)")
        self.optim.validate()


@dataclass
class CommonConfig(RunOptions):
    """Options shared by the networks over noisy windows (diffusion model, value network)."""

    windows: WindowConfig = field(default_factory=WindowConfig)
    diffusion_steps: int = 20
    """T_d, the number of diffusion steps (the value network: of the model it will guide)."""
    schedule: ScheduleKind = "cosine"
    """Noise schedule (the value network: of the model it will guide)."""

    def validate(self) -> None:
        super().validate()
        require(self.diffusion_steps >= 1, "--diffusion-steps", self.diffusion_steps, ">= 1")


@dataclass
class TrainConfig(CommonConfig):
    """Train the trajectory diffusion model (the report's Algorithm 1.1). The defaults are
    the main job's (`diffplan run`): about 12 minutes on 2 CPU cores with --threads 1 (an
    estimate from 300 measured steps; docs/TRAINING.md)."""

    model: UNetConfig = field(default_factory=lambda: UNetConfig(dim_mults=(1, 2, 4)))
    prediction: PredictionType = "x0"
    """Network target: the clean window (x0, Diffuser's locomotion setting) or the noise."""
    clip_sample: float | None = None
    """Clip the predicted clean window to [-clip_sample, clip_sample] when sampling."""
    action_weight: float = 10.0
    """Loss weight of the first action."""
    loss_discount: float = 1.0
    """Row h of the window is weighted loss_discount**h (rescaled to mean 1)."""
    returns: ReturnConditionConfig = field(default_factory=ReturnConditionConfig)
    # lr 3x Diffuser's 2e-4, which learns too slowly for 20,000 steps (docs/TRAINING.md).
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=20_000, batch_size=64, lr=6e-4, save_every=5000, ema_start=2000
        )
    )

    def validate(self) -> None:
        super().validate()
        self.returns.validate()
        require(
            math.isfinite(self.action_weight) and self.action_weight >= 0,
            "--action-weight",
            self.action_weight,
            "a finite number >= 0",
        )
        require(
            math.isfinite(self.loss_discount) and self.loss_discount > 0,
            "--loss-discount",
            self.loss_discount,
            "a finite number > 0",
        )
        if self.clip_sample is not None:
            require(
                math.isfinite(self.clip_sample) and self.clip_sample > 0,
                "--clip-sample",
                self.clip_sample,
                "a finite number > 0 (or None)",
            )


@dataclass
class TrainValueConfig(CommonConfig):
    """Train the value network r_phi on noisy windows (for value guidance). The defaults
    are the main job's: about 3 to 5 minutes on 2 CPU cores with --threads 1 (an estimate)."""

    out: Path = Path("runs/value")
    """Run directory: config.json, metrics.csv, tensorboard/, checkpoints/."""
    model: ValueNetConfig = field(default_factory=lambda: ValueNetConfig(dim_mults=(1, 2, 4)))
    discount: float = 0.997
    """Discount of the value target (discounted return-to-go of each window)."""
    termination_penalty: float = -100.0
    """Added to the last reward of episodes that terminated (fell)."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(steps=10_000, batch_size=64, save_every=2500)
    )


@dataclass
class DynamicsNetConfig:
    """MLP of a one-step dynamics model."""

    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 3
    """Number of hidden layers."""


DEFAULT_GOAL_NOISE = 0.1
"""Inverse models' default goal noise (normalised units) on a task the table lacks."""


@dataclass
class TrainDynamicsConfig(RunOptions):
    """Train a one-step dynamics model on the dataset's transitions: inverse (s, s') -> a
    (plans execute derived actions) or forward (s, a) -> s' (plan selection by consistency).
    The defaults are the main job's: about 1 to 2 minutes on 2 CPU cores with --threads 1
    (an estimate)."""

    kind: DynamicsKind = "inverse"
    """inverse: (s_t, s_t+1) -> a_t; forward: (s_t, a_t) -> s_t+1."""
    reach: int = 1
    """Inverse models: also learn a_t from (s_t, s_t+m) for every m up to this many steps (m
    an input), so that a tracking planner can aim m steps ahead (--planning.tracking-reach)."""
    goal_noise: float | None = None
    """Inverse models: std of Gaussian noise added to the target state s_t+m in training
    (normalised units), so that a planned state a little off the data still gets a
    data-like action; large values pull the model towards behaviour cloning. None: the
    task's default for inverse models (tasks.json: 0.1, HalfCheetah 1.0; 0.1 for a task the
    table lacks), 0 for forward ones."""
    out: Path = Path("runs/dynamics")
    """Run directory: config.json, metrics.csv, tensorboard/, checkpoints/."""
    normalizer: NormalizerKind = "gaussian"
    """Per-dimension normalisation of observations and actions."""
    model: DynamicsNetConfig = field(default_factory=DynamicsNetConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=10_000, batch_size=256, lr=1e-3, save_every=2500, ema_start=1000
        )
    )

    def validate(self) -> None:
        super().validate()
        if self.reach < 1 or (self.reach > 1 and self.kind != "inverse"):
            raise ValueError(
                f"--reach must be >= 1, and above 1 only for --kind inverse; got {self.reach} "
                f"for --kind {self.kind}"
            )
        noise = self.goal_noise or 0.0
        if not math.isfinite(noise) or noise < 0 or (noise > 0 and self.kind != "inverse"):
            raise ValueError(
                f"--goal-noise must be >= 0, and above 0 only for --kind inverse; got "
                f"{noise} for --kind {self.kind}"
            )

    def noise_on_goal(self, env_id: str | None) -> float:
        """The goal noise in effect for data of ``env_id``: --goal-noise, or its default."""
        if self.goal_noise is not None:
            return self.goal_noise
        if self.kind != "inverse":
            return 0.0
        task = find_task(env_id)
        return DEFAULT_GOAL_NOISE if task is None else task.goal_noise
