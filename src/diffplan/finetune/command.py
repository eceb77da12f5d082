"""``diffplan finetune``: a trained diffusion planner improved by PPO in its environment.

Per iteration: collect decisions in the vector environment (:mod:`~diffplan.finetune.rollout`),
value them with the critic, compute GAE advantages and run the clipped PPO update of the
denoiser and the critic (:mod:`~diffplan.finetune.ppo`). Every rollout step samples its plan
with the network being fine-tuned, at every denoising step; only the last K steps' log-
probabilities enter the objective.

Randomness: iteration ``n`` resets the environments with seeds drawn from ``(seed, n)`` and
draws its chain noise, penalty noise, minibatch order and regulariser batches from
generators seeded with ``(seed, n)``, so a resumed run repeats an uninterrupted one.

Layout of ``--out``: ``config.json``, ``metrics.csv``, ``returns.png`` and
``checkpoints/step_<iteration>/``: a diffusion checkpoint as ``diffplan train`` writes it
(the fine-tuned weights as both ``model`` and ``ema``, kind ``"diffusion"``, the pretrained
model's architecture, normaliser, dataset and training config, plus a ``"finetune"`` entry),
so ``diffplan evaluate --diffusion OUT`` reads it; plus ``critic.safetensors`` and
``finetune_state.pt`` (the critic's optimiser state, read with ``weights_only=True``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from diffplan.atomic import atomic_directory, remove_directory
from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.loading import load_diffusion, load_network
from diffplan.data.sources import load_dataset
from diffplan.diffusion.guidance import ClassifierFreeGuidance
from diffplan.finetune.chain import DenoisingChain
from diffplan.finetune.config import FinetuneConfig
from diffplan.finetune.ppo import Critic, UpdateStats, gae, ppo_update
from diffplan.finetune.prior import DenoisingRegularizer, OODPenalty
from diffplan.finetune.report import METRICS, plot_returns, read_metrics
from diffplan.finetune.rollout import Collector, Rollout
from diffplan.outputs import output_folder
from diffplan.training.commands import resume_point
from diffplan.training.trainer import (
    MetricsLogger,
    make_optimizer,
    start_process,
    write_run_config,
)

# Settings that may change when resuming; all others must match the checkpoint.
RESUMABLE = (
    "out",
    "resume",
    "progress",
    "threads",
    "device",
    "iterations",
    "save_every",
    "keep_checkpoints",
)
CRITIC = "critic"  # the critic's weights: <checkpoint>/critic.safetensors
STATE = "finetune_state.pt"


def iteration_seeds(seed: int, iteration: int, num_envs: int) -> tuple[list[int], int, int]:
    """Iteration ``iteration``'s environment reset seeds, chain-noise seed and update seed."""
    state = np.random.SeedSequence([seed, iteration]).generate_state(num_envs + 2)
    return [int(s) for s in state[:num_envs]], int(state[-2]), int(state[-1])


class Finetuner:
    """The state of a fine-tune run: the denoiser being trained, its critic, their
    optimisers and the counters; :meth:`save` and :meth:`restore` checkpoint all of it."""

    def __init__(self, config: FinetuneConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self.source = ckpt.resolve(config.diffusion)
        self.generator, loaded = load_diffusion(self.source, device=device, weights=config.weights)
        if isinstance(self.generator.model, ClassifierFreeGuidance):
            raise ValueError(
                f"{self.source} is return-conditioned; fine-tuning supports plain diffusion "
                "models (diffplan train without --returns.enabled)"
            )
        self.meta = loaded.meta
        env_id = self.meta.dataset["env_id"]
        if env_id is None:
            raise ValueError(f"{config.diffusion}: its dataset names no environment to act in")
        self.env_id: str = env_id
        gen = self.generator
        if not 1 <= config.effective_window <= gen.horizon - 1:
            raise ValueError(
                f"--effective-window must be in 1..{gen.horizon - 1} for the model's horizon "
                f"{gen.horizon}, got {config.effective_window}"
            )
        num_steps = gen.scheduler.num_train_timesteps
        if config.chain.steps is not None and config.chain.steps > num_steps:
            raise ValueError(
                f"--chain.steps must be in 1..{num_steps} (the model's T_d), got "
                f"{config.chain.steps}"
            )
        self.fixed = gen.fixed.to(device)
        scored = None
        if config.chain.scored == "executed":
            scored = torch.zeros_like(self.fixed)
            scored[: config.effective_window, gen.obs_dim :] = True
        self.chain = DenoisingChain(
            gen.scheduler,
            gen.scheduler.timesteps(config.chain.steps),
            finetune_steps=config.chain.finetune_steps,
            min_std=config.chain.min_std,
            scored=scored,
            reduction=config.chain.log_prob,
        )
        self.model = gen.model
        torch.manual_seed(config.seed)
        self.critic = Critic(gen.obs_dim, config.ppo.critic_hidden).to(device)
        self.actor_optimizer = make_optimizer(self.model, config.ppo.actor_lr)
        self.critic_optimizer = make_optimizer(self.critic, config.ppo.critic_lr)
        settings = {k: v for k, v in asdict(config).items() if k not in RESUMABLE}
        self.checkpoint_meta = ckpt.CheckpointMeta(
            kind="diffusion",
            architecture=self.meta.architecture,
            fingerprint={"finetune": settings, "pretrained": self.meta.fingerprint},
            config={**self.meta.config, "finetune": asdict(config)},
            normalizer=self.meta.normalizer,
            dataset=self.meta.dataset,
        )
        self.iteration, self.env_steps, self.elapsed = 0, 0, 0.0

    def regularizer(self) -> DenoisingRegularizer | None:
        """The denoising regulariser on ``--regularizer.dataset``, if it is on."""
        options = self.config.regularizer
        if options.weight == 0 or options.dataset is None:
            return None
        dataset = load_dataset(options.dataset)
        return DenoisingRegularizer(
            dataset,
            self.generator,
            self.meta.config,
            self.env_id,
            batch_size=options.batch_size,
        )

    def penalty(self) -> OODPenalty | None:
        """The out-of-distribution penalty with the frozen pretrained model, if it is on."""
        options = self.config.ood
        if options.weight == 0:
            return None
        frozen = load_network(
            self.source, "diffusion", device=self.device, weights=self.config.weights
        ).network
        step = self.generator.scheduler.num_train_timesteps // 2
        return OODPenalty(
            frozen,
            self.generator.scheduler,
            self.fixed,
            weight=options.weight,
            step=step if options.step is None else options.step,
        )

    def restore(self, checkpoint: Path) -> None:
        """Continue from a fine-tune ``checkpoint``: weights, critic, optimisers, counters."""
        if not (checkpoint / f"{CRITIC}.safetensors").is_file():
            raise ValueError(
                f"{checkpoint} is not a fine-tune checkpoint (it has no critic); --out must be "
                "a diffplan finetune run directory"
            )
        ckpt.check_compatible(checkpoint, "diffusion", self.checkpoint_meta.fingerprint)
        ckpt.load_weights(checkpoint, self.model, "model")
        ckpt.load_weights(checkpoint, self.critic, CRITIC)
        state = ckpt.load_trainer_state(checkpoint)
        self.actor_optimizer.load_state_dict(state["optimizer"])
        extra = torch.load(checkpoint / STATE, weights_only=True, map_location="cpu")
        self.critic_optimizer.load_state_dict(extra["critic_optimizer"])
        self.iteration = int(state["step"])
        self.env_steps, self.elapsed = int(state["env_steps"]), float(state["elapsed_s"])

    def save(self) -> None:
        """Write ``checkpoints/step_<iteration>`` atomically and keep the newest ones."""
        out = self.config.out
        directory = out / "checkpoints" / f"step_{self.iteration:09d}"
        with atomic_directory(directory, overwrite=True) as tmp:
            # The diffusion checkpoint proper (replaces the empty tmp), then the critic.
            ckpt.save_checkpoint(
                tmp,
                step=self.iteration,
                model=self.model,
                ema=self.model,
                optimizer=self.actor_optimizer,
                meta=self.checkpoint_meta,
                extra={"elapsed_s": self.elapsed, "env_steps": float(self.env_steps)},
            )
            critic = {k: v.detach().cpu().contiguous() for k, v in self.critic.state_dict().items()}
            save_file(critic, str(tmp / f"{CRITIC}.safetensors"))
            torch.save({"critic_optimizer": self.critic_optimizer.state_dict()}, tmp / STATE)
        for old in ckpt.checkpoints(out)[: -self.config.keep_checkpoints]:
            remove_directory(old)

    def advantages(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and returns ``(n,)`` of the rollout's decisions (scaled rewards)."""
        d = rollout.decisions
        with torch.no_grad():
            values, next_values = self.critic(d.observations), self.critic(d.next_observations)
        advantages, returns = gae(
            d.rewards.cpu() * self.config.ppo.reward_scale,
            values.cpu(),
            next_values.cpu(),
            d.discounts.cpu(),
            d.terminated.cpu(),
            d.cut.cpu(),
            self.config.ppo.gae_lambda,
        )
        return advantages.to(self.device), returns.to(self.device)


def window_label(config: FinetuneConfig) -> str:
    """The run's windows in words: ``k = 7`` or ``k ~ U{1..7}``."""
    if config.window_sampling == "uniform":
        return f"k ~ U{{1..{config.effective_window}}}"
    return f"k = {config.effective_window}"


def metrics_row(
    tuner: Finetuner, rollout: Rollout, stats: UpdateStats, penalized: bool
) -> dict[str, Any]:
    """One ``metrics.csv`` row (None: not applicable)."""
    returns = rollout.episode_returns
    return {
        "iteration": tuner.iteration,
        "env_steps": tuner.env_steps,
        "episodes": len(returns),
        "mean_return": float(np.mean(returns)) if returns else None,
        "falls": rollout.falls,
        "policy_loss": stats.policy_loss,
        "value_loss": stats.value_loss,
        "approx_kl": stats.approx_kl,
        "clip_fraction": stats.clip_fraction,
        "minibatches": stats.minibatches,
        "regularizer_loss": stats.regularizer_loss,
        "ood_penalty": rollout.decisions.penalties.mean().item() if penalized else None,
        "elapsed_s": tuner.elapsed,
    }


def finetune(config: FinetuneConfig) -> list[dict[str, Any]]:
    """Run ``diffplan finetune`` (module docstring); returns this run's metrics rows."""
    with output_folder(config.out, "finetune", existing="reuse"):
        return _finetune(config)


def _finetune(config: FinetuneConfig) -> list[dict[str, Any]]:
    process = start_process(config.device, config.threads)
    if process.world_size > 1:
        raise ValueError("diffplan finetune runs in one process; start it without torchrun")
    device = process.device
    resume_from = resume_point(config)  # type: ignore[arg-type]  # reads .out and .resume
    tuner = Finetuner(config, device)
    if resume_from is not None:
        tuner.restore(resume_from)
    regularizer, penalty = tuner.regularizer(), tuner.penalty()
    write_run_config(config.out, asdict(config), process)
    gen, ppo = tuner.generator, config.ppo
    collector = Collector(
        tuner.env_id,
        ppo.num_envs,
        generator=gen,
        chain=tuner.chain,
        effective_window=config.effective_window,
        gamma=ppo.gamma,
        window_sampling=config.window_sampling,
        penalty=penalty,
    )
    log = MetricsLogger(config.out, tuner.iteration, METRICS)
    bar = tqdm(
        total=config.iterations,
        initial=tuner.iteration,
        unit="it",
        desc="finetune",
        dynamic_ncols=True,
        disable=not config.progress,
    )
    rows: list[dict[str, Any]] = []
    start, elapsed_before = time.perf_counter(), tuner.elapsed
    try:
        while tuner.iteration < config.iterations:
            tuner.iteration += 1
            env_seeds, noise_seed, update_seed = iteration_seeds(
                config.seed, tuner.iteration, ppo.num_envs
            )
            noise = torch.Generator(device=device).manual_seed(noise_seed)
            rollout = collector.collect(ppo.rollout_steps, env_seeds, noise)
            advantages, returns = tuner.advantages(rollout)
            stats = ppo_update(
                tuner.chain,
                tuner.model,
                tuner.critic,
                tuner.actor_optimizer,
                tuner.critic_optimizer,
                rollout.decisions,
                advantages,
                returns,
                fixed=tuner.fixed,
                config=ppo,
                denoising_discount=config.chain.discount,
                generator=torch.Generator().manual_seed(update_seed),
                regularizer=regularizer,
                regularizer_weight=config.regularizer.weight,
                update_actor=tuner.iteration > ppo.critic_warmup,
            )
            tuner.env_steps += rollout.env_steps
            tuner.elapsed = elapsed_before + time.perf_counter() - start
            row = metrics_row(tuner, rollout, stats, penalty is not None)
            log.log(row)
            rows.append(row)
            bar.update(1)
            if row["mean_return"] is not None:
                bar.set_postfix(ret=f"{row['mean_return']:.1f}", kl=f"{stats.approx_kl:.2g}")
            if tuner.iteration % config.save_every == 0 or tuner.iteration == config.iterations:
                tuner.save()
    finally:
        bar.close()
        log.close()
        collector.close()
    plot_returns(
        read_metrics(config.out / "metrics.csv"),
        config.out / "returns.png",
        title=f"PPO fine-tuning in {tuner.env_id} ({window_label(config)})",
        dataset_mean=tuner.meta.dataset.get("mean_return"),
    )
    print(f"written   {config.out}/returns.png")
    return rows
