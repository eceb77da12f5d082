"""Closed-loop collection of decisions in a vector environment (the outer MDP).

A *decision* is one plan: sampled by the :class:`~diffplan.finetune.chain.DenoisingChain`
from the real state, its first ``k`` actions executed (clipped to the action bounds); ``k``
is fixed or, with ``window_sampling="uniform"``, drawn for each plan from ``1..k``. Its
reward is the discounted sum of the rewards of the steps it ran, and the next decision is
``gamma ** steps`` later. A decision ends early when its episode ends (terminated: no
bootstrap; truncated: bootstrapped from the final observation) or when the iteration's
``rollout_steps`` run out (bootstrapped from the state reached). Environments replan
independently (as :class:`~diffplan.planning.DiffusionPlanner` does): those that need a
plan at a step are planned for together. Episodes restart automatically within an iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from diffplan.diffusion.masks import state_values
from diffplan.diffusion.sampling import TrajectoryGenerator
from diffplan.finetune.chain import DenoisingChain

# penalty(executed windows (n, H, D) normalised, valid rows (n, H), generator) -> (n,)
Penalty = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Decisions:
    """An iteration's ``n`` decisions: each environment's in time order, one environment
    after the other. States are normalised; ``trajectories`` and ``log_probs`` are the
    chain's (:class:`~diffplan.finetune.chain.ChainSample`)."""

    observations: torch.Tensor
    """``(n, obs_dim)`` the state each plan was made from."""
    trajectories: torch.Tensor
    """``(n, K + 1, H, D)`` the fine-tuned steps' inputs and outputs."""
    log_probs: torch.Tensor
    """``(n, K)`` the fine-tuned steps' log-probabilities when sampled."""
    rewards: torch.Tensor
    """``(n,)`` discounted reward sums (minus the out-of-distribution penalty, if any)."""
    discounts: torch.Tensor
    """``(n,)`` ``gamma ** steps run``: the discount to the next decision."""
    next_observations: torch.Tensor
    """``(n, obs_dim)`` the state after the decision (an ended episode's final state)."""
    terminated: torch.Tensor
    """``(n,)`` bool: the episode terminated in this decision (no bootstrap)."""
    cut: torch.Tensor
    """``(n,)`` bool: the decision is the last of its episode or of its environment's
    rollout (advantages are not carried across it)."""
    penalties: torch.Tensor
    """``(n,)`` the out-of-distribution penalty subtracted from ``rewards`` (zeros if off)."""


@dataclass
class Rollout:
    """What an iteration collected: its decisions and the episodes that finished in it."""

    decisions: Decisions
    env_steps: int
    episode_returns: list[float]
    falls: int


@dataclass
class _Decision:
    """A decision of one environment: its plan, the rows it ran and, once closed, its end."""

    observation: torch.Tensor
    trajectory: torch.Tensor
    log_probs: torch.Tensor
    plan: torch.Tensor
    actions: np.ndarray
    """``(window, act_dim)`` the actions this decision runs."""
    rows: list[np.ndarray] = field(default_factory=list)
    reward: float = 0.0
    next_observation: np.ndarray | None = None
    terminated: bool = False
    cut: bool = False

    def close(self, next_observation: np.ndarray, *, terminated: bool, cut: bool) -> None:
        self.next_observation, self.terminated, self.cut = next_observation, terminated, cut


class Collector:
    """Runs the planner-as-policy in ``num_envs`` environments of ``env_id``.

    Args:
        generator: the model being fine-tuned, its scheduler and normaliser.
        chain: the denoising chain sampled for each plan.
        effective_window: ``k``, actions run per plan (the most, with uniform sampling).
        window_sampling: fixed: every plan runs ``k`` actions; uniform: each plan runs a
            number drawn uniformly from ``1..k`` (from the chain's noise generator).
        gamma: discount per environment step.
        penalty: optional out-of-distribution penalty of executed windows.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        generator: TrajectoryGenerator,
        chain: DenoisingChain,
        effective_window: int,
        gamma: float,
        window_sampling: Literal["fixed", "uniform"] = "fixed",
        penalty: Penalty | None = None,
    ) -> None:
        self.envs = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )
        space = self.envs.single_action_space
        self.low, self.high = space.low, space.high
        self.num_envs, self.generator, self.chain = num_envs, generator, chain
        self.k, self.gamma, self.penalty = effective_window, gamma, penalty
        self.window_sampling = window_sampling
        self.obs_normalizer = generator.normalizer.slice(0, generator.obs_dim)

    def close(self) -> None:
        self.envs.close()

    def _normalized(self, observations: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.generator.device)
        return self.obs_normalizer.normalize(obs)

    def _plan(self, observations: np.ndarray, noise: torch.Generator) -> list[_Decision]:
        """Sample plans for ``(b, obs_dim)`` raw observations: one new decision each."""
        gen = self.generator
        obs = self._normalized(observations)
        values = state_values(obs, gen.horizon, gen.act_dim)
        sample = self.chain.sample(gen.model, values, gen.fixed.to(gen.device), noise)
        raw = gen.normalizer.unnormalize(sample.window)
        actions = np.clip(raw[:, : self.k, gen.obs_dim :].cpu().numpy(), self.low, self.high)
        windows = [self.k] * len(obs)
        if self.window_sampling == "uniform":
            drawn = torch.randint(1, self.k + 1, (len(obs),), generator=noise, device=noise.device)
            windows = drawn.tolist()
        parts = (obs, sample.trajectory, sample.log_probs, sample.window)
        return [
            _Decision(*decision, plan_actions[:window])
            for *decision, plan_actions, window in zip(*parts, actions, windows, strict=True)
        ]

    def collect(self, steps: int, seeds: list[int], noise: torch.Generator) -> Rollout:
        """Reset the environments with ``seeds`` and run ``steps`` steps in each; the
        chain's (and the penalty's) noise comes from ``noise`` (on the model's device)."""
        observations, _ = self.envs.reset(seed=seeds)
        current: list[_Decision] = []
        done: list[list[_Decision]] = [[] for _ in range(self.num_envs)]
        stale = list(range(self.num_envs))  # environments that need a plan
        running = np.zeros(self.num_envs)
        returns: list[float] = []
        falls = 0
        for _ in range(steps):
            if stale:
                planned = dict(zip(stale, self._plan(observations[stale], noise), strict=True))
                current = [planned[e] if e in planned else current[e] for e in range(self.num_envs)]
            actions = np.stack([d.actions[len(d.rows)] for d in current])
            for d, obs, action in zip(current, observations, actions, strict=True):
                d.rows.append(np.concatenate([obs, action]))
            observations, rewards, terminated, truncated, info = self.envs.step(actions)
            running += rewards
            stale = []
            for e, d in enumerate(current):
                d.reward += self.gamma ** (len(d.rows) - 1) * float(rewards[e])
                ended = bool(terminated[e] or truncated[e])
                if ended:
                    returns.append(float(running[e]))
                    falls += bool(terminated[e])
                    running[e] = 0.0
                if ended or len(d.rows) == len(d.actions):
                    after = info["final_obs"][e] if ended else observations[e]
                    d.close(after, terminated=bool(terminated[e]), cut=ended)
                    done[e].append(d)
                    stale.append(e)
        for e, d in enumerate(current):
            if e not in stale:  # a decision the rollout's end interrupts
                d.close(observations[e], terminated=False, cut=True)
                done[e].append(d)
            done[e][-1].cut = True  # advantages never run past the rollout
        decisions = self._decisions([d for per_env in done for d in per_env], noise)
        return Rollout(decisions, steps * self.num_envs, returns, falls)

    def _decisions(self, records: list[_Decision], noise: torch.Generator) -> Decisions:
        device = self.generator.device
        ran = torch.tensor([len(d.rows) for d in records], dtype=torch.float32, device=device)
        rewards = torch.tensor([d.reward for d in records], dtype=torch.float32, device=device)
        penalties = torch.zeros_like(rewards)
        if self.penalty is not None:
            windows, valid = self._executed_windows(records)
            penalties = self.penalty(windows, valid, noise)
        return Decisions(
            observations=torch.stack([d.observation for d in records]),
            trajectories=torch.stack([d.trajectory for d in records]),
            log_probs=torch.stack([d.log_probs for d in records]),
            rewards=rewards - penalties,
            discounts=self.gamma**ran,
            next_observations=self._normalized(np.stack([d.next_observation for d in records])),
            terminated=torch.tensor([d.terminated for d in records], device=device),
            cut=torch.tensor([d.cut for d in records], device=device),
            penalties=penalties,
        )

    def _executed_windows(self, records: list[_Decision]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each decision's plan ``(n, H, D)`` with its executed rows (real states and the
        actions run) in place of the planned ones, and ``(n, H)`` True on executed rows."""
        gen = self.generator
        windows = torch.stack([d.plan for d in records]).clone()
        valid = torch.zeros(windows.shape[:2], dtype=torch.bool, device=gen.device)
        for i, d in enumerate(records):
            rows = torch.as_tensor(np.stack(d.rows), dtype=torch.float32, device=gen.device)
            windows[i, : len(rows)] = gen.normalizer.normalize(rows)
            valid[i, : len(rows)] = True
        return windows, valid
