"""Typed options of ``diffplan finetune`` (every field's docstring is its ``--help`` text).

Defaults follow DPPO's Gym locomotion settings (Ren et al. 2024) where they apply: the last
10 denoising steps fine-tuned, noise std floor 0.1, clip ratio 0.01, 10 epochs, actor lr
1e-4, critic lr 1e-3, denoising discount 0.99, GAE lambda 0.95, 4 actions per plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from diffplan.runtime import DeviceChoice


@dataclass
class ChainConfig:
    """The denoising chain as a policy (DPPO's inner MDP)."""

    steps: int | None = None
    """Denoising steps of the chain, evenly spaced over T_d (default: all T_d, ancestral DDPM)."""
    finetune_steps: int = 10
    """K: the last K denoising steps (those nearest the clean plan) enter the PPO objective;
    the earlier ones run without gradients."""
    min_std: float = 0.1
    """Floor on every step's noise std, in normalised units (exploration; must be > 0: the
    last step's posterior std is 0)."""
    discount: float = 0.99
    """The advantage of the j-th fine-tuned step before the last is weighted discount**j
    (DPPO's denoising discount; 1: all steps alike)."""
    scored: Literal["plan", "executed"] = "plan"
    """Entries whose density makes a step's log-probability: plan: every planned entry (all
    but the current state); executed: only the k actions the environment runs (as DPPO
    scores only its executed action steps)."""
    log_prob: Literal["mean", "sum"] = "mean"
    """mean: a step's log-probability is the mean over its scored entries (DPPO; the PPO
    clip then bounds the per-entry ratio, whatever the plan's size); sum: their joint
    log-density (a plan of 167 entries at std 0.1 moves its ratio far past any clip)."""

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--chain.steps must be >= 1, got {self.steps}")
        if self.finetune_steps < 1:
            raise ValueError(f"--chain.finetune-steps must be >= 1, got {self.finetune_steps}")
        if self.min_std <= 0:
            raise ValueError(
                f"--chain.min-std must be > 0 (the last denoising step has no noise of its "
                f"own, so its log-probability needs the floor), got {self.min_std}"
            )
        if not 0 < self.discount <= 1:
            raise ValueError(f"--chain.discount must be in (0, 1], got {self.discount}")


@dataclass
class PPOConfig:
    """Rollouts, advantages and the clipped PPO update."""

    num_envs: int = 8
    """Environments stepped side by side (gymnasium sync vector env)."""
    rollout_steps: int = 1000
    """Environment steps per environment and iteration. Every iteration resets the
    environments (seeds drawn from --seed and the iteration), so a resumed run is exact; only
    episodes that end within an iteration count in its mean return, so make this at least the
    episode's time limit (Walker2d: 1000)."""
    epochs: int = 10
    """Passes over an iteration's decisions."""
    minibatch_size: int = 256
    """Decisions per minibatch of the denoiser's update (each contributes its K fine-tuned
    denoising steps)."""
    critic_minibatch_size: int | None = None
    """Decisions per minibatch of the critic's regression, which makes its own --ppo.epochs
    passes (None: --ppo.minibatch-size). The critic is cheap: smaller minibatches give it
    more steps per iteration than a large actor minibatch would."""
    clip: float = 0.01
    """PPO clip ratio epsilon of the per-step probability ratios."""
    actor_lr: float = 1e-4
    """Adam learning rate of the denoiser."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic."""
    gamma: float = 0.99
    """Discount per environment step; consecutive decisions k steps apart are gamma**k apart."""
    gae_lambda: float = 0.95
    """GAE lambda, per decision."""
    grad_clip: float | None = 1.0
    """Clip the denoiser's gradient norm to this value; None: no clipping."""
    target_kl: float | None = 1.0
    """Stop an iteration's update at the first minibatch whose approximate KL exceeds this;
    None: always run every epoch."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this for the critic and the advantages (logged returns stay
    raw); use it to bring returns near 1-100."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the critic MLP on the normalised state."""
    critic_warmup: int = 0
    """The first this-many iterations train only the critic (the denoiser stays as it was),
    so that the first policy updates use advantages from a critic that has seen the
    planner's returns (DPPO's critic warm-up)."""

    def __post_init__(self) -> None:
        if self.critic_warmup < 0:
            raise ValueError(f"--ppo.critic-warmup must be >= 0, got {self.critic_warmup}")
        if self.critic_minibatch_size is not None and self.critic_minibatch_size < 1:
            raise ValueError(
                f"--ppo.critic-minibatch-size must be >= 1, got {self.critic_minibatch_size}"
            )
        for name in ("num_envs", "rollout_steps", "epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                flag = "--ppo." + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.clip <= 0 or self.actor_lr <= 0 or self.critic_lr <= 0 or self.reward_scale <= 0:
            raise ValueError(
                "--ppo.clip, --ppo.actor-lr, --ppo.critic-lr and --ppo.reward-scale must be > 0"
            )
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(
                f"need 0 < --ppo.gamma <= 1 and 0 <= --ppo.gae-lambda <= 1, "
                f"got {self.gamma} and {self.gae_lambda}"
            )
        if not self.critic_hidden or min(self.critic_hidden) < 1:
            raise ValueError(f"--ppo.critic-hidden needs positive widths, got {self.critic_hidden}")


@dataclass
class RegularizerConfig:
    """Pull toward the pretrained model: its denoising loss on the offline dataset's windows."""

    weight: float = 0.0
    """Weight of the denoising loss added to the PPO loss (0: off)."""
    dataset: str | None = None
    """The offline dataset (of the model's environment) whose windows the loss is taken on."""
    batch_size: int = 64
    """Windows per minibatch."""

    def __post_init__(self) -> None:
        if self.weight < 0 or self.batch_size < 1:
            raise ValueError(
                f"need --regularizer.weight >= 0 and --regularizer.batch-size >= 1, "
                f"got {self.weight} and {self.batch_size}"
            )
        if self.weight > 0 and self.dataset is None:
            raise ValueError("--regularizer.weight > 0 needs --regularizer.dataset")


@dataclass
class OODPenaltyConfig:
    """Penalise executed windows the pretrained model finds unlikely."""

    weight: float = 0.0
    """Subtract weight * (the frozen pretrained model's denoising error on each decision's
    executed states and actions) from the decision's reward (0: off)."""
    step: int | None = None
    """Diffusion step the error is measured at (default: T_d // 2)."""

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"--ood.weight must be >= 0, got {self.weight}")
        if self.step is not None and self.step < 0:
            raise ValueError(f"--ood.step must be >= 0, got {self.step}")


@dataclass
class FinetuneConfig:
    """Fine-tune a trained diffusion planner with PPO in the environment (DPPO, Ren et al.
    2024): the plan's denoising chain is the policy, the environment's rewards the signal."""

    diffusion: Path
    """Diffusion model to start from: a `diffplan train` run directory or one of its checkpoints."""
    out: Path = Path("runs/finetune")
    """Run directory: config.json, metrics.csv, returns.png, checkpoints/ (which `diffplan
    evaluate --diffusion` reads like a training run's)."""
    effective_window: int = 4
    """k: actions of each plan executed before replanning (1 .. H-1)."""
    window_sampling: Literal["fixed", "uniform"] = "fixed"
    """fixed: every plan runs k actions; uniform: each plan runs a number of actions drawn
    uniformly from 1..k, so one model learns every window up to k (with --chain.scored
    executed, the first k actions are scored)."""
    iterations: int = 100
    """PPO iterations (a resumed run continues up to this number)."""
    weights: Literal["ema", "model"] = "ema"
    """Which weights of the diffusion checkpoint to start from."""
    chain: ChainConfig = field(default_factory=ChainConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    ood: OODPenaltyConfig = field(default_factory=OODPenaltyConfig)
    save_every: int = 10
    """Write a checkpoint every this many iterations (and at the end)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    seed: int = 0
    """Seed of the critic's initial weights and of every iteration's environments and noise."""
    device: DeviceChoice = "auto"
    """auto: CUDA if available, else CPU."""
    threads: int | None = None
    """CPU threads of torch (None: torch's default). Use 1 on a busy machine."""
    resume: bool = False
    """Continue from the latest checkpoint in --out (same settings required)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if min(self.iterations, self.save_every, self.keep_checkpoints) < 1:
            raise ValueError("--iterations, --save-every and --keep-checkpoints must be >= 1")
