"""``diffplan finetune``'s maths: the denoising chain's log-probabilities and sampler, GAE
and the rollout collector's bookkeeping."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from test_finetune import ENV_ID, EPISODE_STEPS
from test_finetune import pretrained as pretrained  # the module-scoped fixture

from diffplan.checkpoints import load_generator
from diffplan.diffusion import (
    DDPMScheduler,
    SamplerConfig,
    sample_windows,
    state_mask,
    state_values,
)
from diffplan.finetune import Collector, DenoisingChain, gae
from diffplan.models import TemporalUnet


def tiny_network(horizon: int = 4, obs_dim: int = 3, act_dim: int = 2) -> TemporalUnet:
    torch.manual_seed(0)
    return TemporalUnet(horizon, obs_dim + act_dim, dim=8, dim_mults=(1,)).eval()


# --- the denoising chain ---------------------------------------------------------------------


def test_log_probs_match_a_direct_gaussian_computation() -> None:
    model, scheduler = tiny_network(), DDPMScheduler(6)
    fixed = state_mask(4, 3, 2)
    values = state_values(torch.randn(5, 3), 4, 2)
    min_std = 0.3  # above the last two steps' posterior stds (0.24 and 0)
    chain = DenoisingChain(scheduler, scheduler.timesteps(), finetune_steps=4, min_std=min_std)
    sample = chain.sample(model, values, fixed, torch.Generator().manual_seed(1))
    trajectory = sample.trajectory
    assert trajectory.shape == (5, 5, 4, 5) and sample.log_probs.shape == (5, 4)
    assert torch.equal(trajectory[:, -1], sample.window)
    assert torch.equal(trajectory[:, :, 0, :3], values[:, None, 0, :3].expand(-1, 5, -1))

    expected, including_fixed, floored = [], [], []
    with torch.no_grad():
        for j, (t, prev_t) in enumerate(zip([3, 2, 1, 0], [2, 1, 0, -1], strict=True)):
            x = trajectory[:, j]
            output = model(x, torch.full((5,), t))
            # The scheduler's DDPM step minus its noise (redrawn from the same seed) is the mean.
            seeded = torch.Generator().manual_seed(9)
            step = scheduler.step(output, t, x, prev_t=prev_t, generator=seeded)
            sigma = scheduler.posterior_variance(t, prev_t).sqrt()
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
            mean = step.prev_sample - sigma * noise if prev_t >= 0 else step.prev_sample
            std = max(float(sigma), min_std)
            floored.append(std == min_std)
            density = torch.distributions.Normal(mean, std).log_prob(trajectory[:, j + 1])
            expected.append(density[:, ~fixed].sum(dim=-1))
            including_fixed.append(density.sum(dim=(-2, -1)))
    expected_log_probs = torch.stack(expected, dim=1)
    assert floored == [False, False, True, True]  # the floor is active at the last steps
    torch.testing.assert_close(sample.log_probs, expected_log_probs, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        recomputed = chain.log_probs(model, trajectory, fixed)
    torch.testing.assert_close(recomputed, expected_log_probs, rtol=1e-5, atol=1e-4)
    # The fixed entries (the current state) are no part of the density.
    assert not torch.allclose(torch.stack(including_fixed, dim=1), expected_log_probs)

    # Log-probabilities are differentiable in the network's weights.
    chain.log_probs(model, trajectory, fixed).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mean_log_probs_over_scored_entries() -> None:
    """DPPO's per-entry mean over a subset (the executed actions) is the direct Gaussian
    density of those entries, divided by their number; the draws do not change."""
    model, scheduler = tiny_network(), DDPMScheduler(6)
    fixed, values = state_mask(4, 3, 2), state_values(torch.randn(5, 3), 4, 2)
    executed = torch.zeros(4, 5, dtype=torch.bool)
    executed[:2, 3:] = True  # k = 2 actions of 2 dims
    joint = DenoisingChain(scheduler, scheduler.timesteps(), finetune_steps=3, min_std=0.2)
    per_entry = DenoisingChain(
        scheduler,
        scheduler.timesteps(),
        finetune_steps=3,
        min_std=0.2,
        scored=executed,
        reduction="mean",
    )
    sample = per_entry.sample(model, values, fixed, torch.Generator().manual_seed(3))
    reference = joint.sample(model, values, fixed, torch.Generator().manual_seed(3))
    assert torch.equal(sample.trajectory, reference.trajectory)

    expected = []
    with torch.no_grad():
        for j in range(3):
            index = joint.first_finetuned + j
            mean = joint.mean(model, sample.trajectory[:, j], index)
            density = torch.distributions.Normal(mean, joint.stds[index]).log_prob(
                sample.trajectory[:, j + 1]
            )
            expected.append(density[:, executed].mean(dim=-1))
        recomputed = per_entry.log_probs(model, sample.trajectory, fixed)
    torch.testing.assert_close(sample.log_probs, torch.stack(expected, dim=1))
    torch.testing.assert_close(recomputed, sample.log_probs)
    assert not torch.allclose(sample.log_probs, reference.log_probs / (~fixed).sum())


@pytest.mark.parametrize("steps", [None, 3])
def test_chain_without_floor_is_the_ddpm_sampler(steps: int | None) -> None:
    model, scheduler = tiny_network(), DDPMScheduler(6)
    timesteps = scheduler.timesteps(steps)
    chain_steps = timesteps.tolist()
    # The posterior mean is exactly the DDPM step's, for every jump of the chain.
    for t, prev_t in zip(chain_steps, [*chain_steps[1:], -1], strict=True):
        x, output = torch.randn(5, 4, 5), torch.randn(5, 4, 5)
        x0 = scheduler.predict_x0(output, t, x)
        step = scheduler.step(
            output, t, x, prev_t=prev_t, method="ddpm", generator=torch.Generator().manual_seed(t)
        )
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        sigma = scheduler.posterior_variance(t, prev_t).sqrt() if prev_t >= 0 else 0.0
        mean = scheduler.posterior_mean(x0, x, t, prev_t)
        assert torch.equal(mean + sigma * noise, step.prev_sample)

    # With min_std = 0 the whole chain is the "ddpm" sampler, draw for draw.
    fixed, values = state_mask(4, 3, 2), state_values(torch.randn(7, 3), 4, 2)
    chain = DenoisingChain(scheduler, timesteps, finetune_steps=2, min_std=0.0)
    ours = chain.sample(model, values, fixed, torch.Generator().manual_seed(4)).window
    theirs = sample_windows(
        model,
        scheduler,
        values,
        fixed,
        sampler=SamplerConfig("ddpm", steps),
        generator=torch.Generator().manual_seed(4),
    )
    assert torch.equal(ours, theirs)


# --- advantages and rollouts -----------------------------------------------------------------


def test_gae_matches_a_hand_computation() -> None:
    # Decisions of k = 2 steps, gamma = 0.9: two ordinary ones, one that terminates after a
    # single step, then one of a new episode that the time limit truncates (bootstrapped).
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    values = torch.tensor([0.5, 1.0, 1.5, 2.0])
    next_values = torch.tensor([1.0, 1.5, 9.0, 2.5])  # 9.0: after the fall, never used
    discounts = torch.tensor([0.81, 0.81, 0.9, 0.81])
    terminated = torch.tensor([False, False, True, False])
    cut = torch.tensor([False, False, True, True])
    advantages, returns = gae(rewards, values, next_values, discounts, terminated, cut, lam=0.8)

    delta = [1 + 0.81 * 1.0 - 0.5, 2 + 0.81 * 1.5 - 1.0, 3 - 1.5, 4 + 0.81 * 2.5 - 2.0]
    a3 = delta[3]
    a2 = delta[2]  # the fall: nothing is carried back across it
    a1 = delta[1] + 0.81 * 0.8 * a2
    a0 = delta[0] + 0.81 * 0.8 * a1
    hand = torch.tensor([a0, a1, a2, a3])
    torch.testing.assert_close(advantages, hand)
    torch.testing.assert_close(returns, hand + values)
    assert a0 == pytest.approx(3.375176)


@pytest.mark.parametrize("window_sampling", ["fixed", "uniform"])
def test_rollout_bookkeeping(
    pretrained: tuple[Path, Path], window_sampling: Literal["fixed", "uniform"]
) -> None:
    _, diffusion = pretrained
    generator = load_generator(diffusion)
    chain = DenoisingChain(
        generator.scheduler, generator.scheduler.timesteps(), finetune_steps=3, min_std=0.1
    )
    gamma, k, steps, num_envs = 0.9, 3, EPISODE_STEPS + 4, 3
    collector = Collector(
        ENV_ID,
        num_envs,
        generator=generator,
        chain=chain,
        effective_window=k,
        gamma=gamma,
        window_sampling=window_sampling,
    )
    try:
        rollout = collector.collect(steps, [1, 2, 3], torch.Generator().manual_seed(0))
    finally:
        collector.close()
    d = rollout.decisions
    ran = torch.round(torch.log(d.discounts) / np.log(gamma)).long()
    assert ran.sum().item() == rollout.env_steps == steps * num_envs
    assert ran.min() >= 1 and ran.max() <= k
    # Decisions that ran to their plan's end (not cut by an episode's or the rollout's end)
    # ran k actions each, or, sampled uniformly, every number of actions from 1 to k.
    full = ran[~d.cut].unique().tolist()
    assert full == ([k] if window_sampling == "fixed" else list(range(1, k + 1)))
    # Every environment finishes its first episode (terminated or truncated at 30 steps).
    assert len(rollout.episode_returns) >= num_envs
    assert rollout.falls == int(d.terminated.sum()) and bool(d.cut[-1])
    assert int(d.cut.sum()) >= max(len(rollout.episode_returns), num_envs)
    following = ~d.cut[:-1]  # an uncut decision is followed by the one from where it ended
    torch.testing.assert_close(d.next_observations[:-1][following], d.observations[1:][following])
    assert d.trajectories.shape[:2] == (len(d.rewards), 4) and d.log_probs.shape[1] == 3
    assert torch.equal(d.penalties, torch.zeros_like(d.rewards))
