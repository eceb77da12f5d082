"""Advantages (GAE over decisions) and the clipped PPO update of the denoising chain.

Every fine-tuned denoising step of a decision is a PPO sample with its own probability
ratio ``exp(log pi_new - log pi_old)`` (DPPO): it shares the decision's advantage,
normalised over the iteration and weighted ``denoising_discount ** j`` for the j-th step
before the last. The loss of a minibatch of decisions is the clipped surrogate averaged
over its decisions and steps (plus the optional denoising regulariser); the critic, an MLP
on the normalised state, regresses the GAE returns with its own optimiser and
minibatches (after the denoiser's update).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from diffplan.finetune.chain import DenoisingChain
from diffplan.finetune.config import PPOConfig
from diffplan.finetune.rollout import Decisions

# regulariser(model, CPU generator) -> scalar loss (unweighted)
Regularizer = Callable[[nn.Module, torch.Generator], torch.Tensor]


class Critic(nn.Module):
    """State value ``V(s)``: normalised observations ``(B, obs_dim)`` -> ``(B,)``."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.Mish()]
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)[:, 0]


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    discounts: torch.Tensor,
    terminated: torch.Tensor,
    cut: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over a sequence of decisions.

    All inputs are ``(n,)``: decision ``i`` earned ``rewards[i]``, started in a state of value
    ``values[i]`` and led, ``discounts[i]`` later, to a state of value ``next_values[i]``
    (ignored where ``terminated[i]``). ``cut[i]``: decision ``i + 1`` does not follow it
    (its episode or its rollout ended). Returns ``(advantages, returns)``, ``(n,)`` each::

        delta_i = r_i + d_i (1 - terminated_i) V(s'_i) - V(s_i)
        A_i     = delta_i + d_i lam (1 - cut_i) A_{i+1}
        R_i     = A_i + V(s_i)
    """
    deltas = rewards + discounts * (~terminated) * next_values - values
    carry = discounts * lam * (~cut)
    advantages = torch.zeros_like(deltas)
    following = deltas.new_zeros(())
    for i in range(len(deltas) - 1, -1, -1):
        following = deltas[i] + carry[i] * following
        advantages[i] = following
    return advantages, advantages + values


@dataclass(frozen=True)
class UpdateStats:
    """Means over the minibatches of an iteration's update."""

    policy_loss: float
    value_loss: float
    approx_kl: float
    clip_fraction: float
    regularizer_loss: float | None
    minibatches: int
    """Minibatches the denoiser was updated on (fewer than epochs x batches: stopped by
    target_kl)."""


def ppo_update(
    chain: DenoisingChain,
    model: nn.Module,
    critic: Critic,
    actor_optimizer: torch.optim.Optimizer,
    critic_optimizer: torch.optim.Optimizer,
    decisions: Decisions,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    *,
    fixed: torch.Tensor,
    config: PPOConfig,
    denoising_discount: float,
    generator: torch.Generator,
    regularizer: Regularizer | None = None,
    regularizer_weight: float = 0.0,
    update_actor: bool = True,
) -> UpdateStats:
    """``config.epochs`` passes over ``decisions`` in minibatches shuffled by the CPU
    ``generator``; ``advantages`` and ``returns`` ``(n,)`` come from :func:`gae` (returns in
    scaled reward units); ``fixed (H, D)`` is the inpainting mask; ``regularizer`` (times
    ``regularizer_weight``) is added to every minibatch's policy loss. Without
    ``update_actor`` only the critic learns (the policy statistics are then 0)."""
    count = len(advantages)
    normalized = (advantages - advantages.mean()) / (advantages.std(correction=0) + 1e-8)
    powers = torch.arange(chain.finetune_steps - 1, -1, -1, device=advantages.device)
    step_weights = denoising_discount**powers  # (K,): 1 for the last step
    sums = {"policy": 0.0, "value": 0.0, "kl": 0.0, "clip": 0.0, "regularizer": 0.0}
    minibatches = 0
    device = advantages.device
    actor_epochs = config.epochs if update_actor else 0
    for batch in _minibatches(count, config.minibatch_size, actor_epochs, generator, device):
        stop = _update_actor(
            chain,
            model,
            actor_optimizer,
            decisions,
            batch,
            normalized[batch, None] * step_weights,
            fixed=fixed,
            config=config,
            sums=sums,
            first=not minibatches,
            regularizer=regularizer,
            regularizer_weight=regularizer_weight,
            generator=generator,
        )
        if stop:
            break
        minibatches += 1
    critic_steps = 0
    critic_batch = config.critic_minibatch_size or config.minibatch_size
    for batch in _minibatches(count, critic_batch, config.epochs, generator, device):
        value_loss = ((critic(decisions.observations[batch]) - returns[batch]) ** 2).mean()
        critic_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        critic_optimizer.step()
        critic_steps += 1
        sums["value"] += value_loss.item()
    actor_steps = max(minibatches, 1)
    return UpdateStats(
        policy_loss=sums["policy"] / actor_steps,
        value_loss=sums["value"] / critic_steps,
        approx_kl=sums["kl"] / actor_steps,
        clip_fraction=sums["clip"] / actor_steps,
        regularizer_loss=sums["regularizer"] / actor_steps if regularizer is not None else None,
        minibatches=minibatches,
    )


def _minibatches(
    count: int, size: int, epochs: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """``epochs`` passes over ``range(count)``, shuffled by the CPU ``generator``, in index
    batches of ``size`` on ``device``."""
    for _ in range(epochs):
        yield from torch.randperm(count, generator=generator).to(device).split(size)


def _update_actor(
    chain: DenoisingChain,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    decisions: Decisions,
    batch: torch.Tensor,
    advantage: torch.Tensor,
    *,
    fixed: torch.Tensor,
    config: PPOConfig,
    sums: dict[str, float],
    first: bool,
    regularizer: Regularizer | None,
    regularizer_weight: float,
    generator: torch.Generator,
) -> bool:
    """One clipped-PPO step of the denoiser on the decisions ``batch`` with ``advantage
    (b, K)``; adds to ``sums``. Returns True (and does not step) when the approximate KL
    exceeds the target: the update stops there."""
    log_probs = chain.log_probs(model, decisions.trajectories[batch], fixed)
    log_ratio = log_probs - decisions.log_probs[batch]
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - config.clip, 1 + config.clip)
    policy_loss = torch.max(-advantage * ratio, -advantage * clipped).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean().item()
    # (the first minibatch is sampled by the very weights it is scored with: ratio 1)
    if config.target_kl is not None and approx_kl > config.target_kl and not first:
        return True
    loss = policy_loss
    if regularizer is not None:
        regularizer_loss = regularizer(model, generator)
        loss = loss + regularizer_weight * regularizer_loss
        sums["regularizer"] += regularizer_loss.item()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    sums["policy"] += policy_loss.item()
    sums["kl"] += approx_kl
    sums["clip"] += ((ratio - 1).abs() > config.clip).float().mean().item()
    return False
