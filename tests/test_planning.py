"""Receding-horizon planner, value guidance and closed-loop evaluation on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffplan.data import Normalizer
from diffplan.diffusion.backends import build_denoiser
from diffplan.diffusion.ddpm import DDPMScheduler
from diffplan.diffusion.sampling import SamplerConfig, TrajectoryGenerator
from diffplan.models import TemporalUnet, ValueNetwork
from diffplan.models.flat import FlatValueNetwork
from diffplan.planning.config import ExperimentalPlanning, PlanningConfig
from diffplan.planning.execution import Execution
from diffplan.planning.guides import GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner
from diffplan.planning.proposal import Proposal, WarmStart
from diffplan.planning.selection import Selection
from diffplan.planning.smoothing import Smoothing

OBS, ACT, H = 3, 2, 8


def tiny_generator(seed: int = 0, horizon: int = H) -> TrajectoryGenerator:
    torch.manual_seed(seed)
    model = TemporalUnet(horizon, OBS + ACT, dim=8, dim_mults=(1, 2)).eval()
    rng = np.random.default_rng(seed)
    normalizer = Normalizer("gaussian", rng.normal(size=OBS + ACT), rng.uniform(0.5, 2, OBS + ACT))
    return TrajectoryGenerator(model, DDPMScheduler(5), normalizer, obs_dim=OBS)


class FirstActionValue(nn.Module):
    """A toy value: the sum of the first action's entries (normalised units)."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x[:, 0, OBS:].sum(-1)


def test_plans_keep_the_conditioned_state_exactly():
    generator = tiny_generator()
    observations = np.random.default_rng(1).normal(size=(4, OBS)).astype(np.float32) * 5
    plans = DiffusionPlanner(generator).plan(observations)
    assert plans.shape == (4, H, OBS + ACT)
    torch.testing.assert_close(plans[:, 0, :OBS], torch.as_tensor(observations), rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_exactly_k_actions_run_between_replans(k):
    planner = DiffusionPlanner(tiny_generator(), effective_window=k)
    planner.reset(2)
    observations = np.zeros((2, OBS), np.float32)
    executed = []
    for _ in range(20):
        before = planner.plans_made
        executed.append(planner.act(observations, np.arange(2)))
        if planner.plans_made > before:  # a replan happened at this step
            first_actions = planner.last_plans[:, 0, OBS:].numpy()
            np.testing.assert_allclose(executed[-1], first_actions)
    assert planner.plans_made == -(-20 // k)  # ceil(20 / k)


class IdentityDenoiser(nn.Module):
    """Predicts x0 = x_t: a sampler step from t = 0 returns its input."""

    horizon, transition_dim = H, OBS + ACT

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("k", [1, 3])
def test_warm_started_replans_start_from_the_last_plan_shifted_by_k(k):
    normalizer = Normalizer("gaussian", np.zeros(OBS + ACT), np.ones(OBS + ACT))
    generator = TrajectoryGenerator(IdentityDenoiser(), DDPMScheduler(20), normalizer, OBS)
    planner = DiffusionPlanner(
        generator,
        effective_window=k,
        proposal=Proposal(SamplerConfig("ddim"), warm_start=WarmStart(step=0, steps=1)),
    )
    planner.reset(2)
    observations = np.zeros((2, OBS), np.float32)
    first = None
    for _ in range(k + 1):
        planner.act(observations, np.arange(2))
        first = planner.last_plans if first is None else first
    second = planner.last_plans
    assert planner.plans_made == 2 and second is not first
    # Rows after the state: the first plan's rows k+1.. (its last row repeated at the end),
    # noised to step 0 (std sqrt(1 - a_bar_0) ~ 0.09 here).
    shifted = torch.cat([first[:, k:], first[:, -1:].expand(-1, k, -1)], dim=1)
    torch.testing.assert_close(second[:, 1:], shifted[:, 1:], rtol=0, atol=0.5)
    assert not torch.allclose(second[:, 1:], first[:, 1:], atol=0.5)


@pytest.mark.parametrize("backend", ["matrix", "onnx", "hybrid"])
@pytest.mark.parametrize("horizon", [8, 16])  # the flat graph; the convolutional and channels-last
def test_fast_backends_plan_like_eager(backend, horizon):
    pytest.importorskip("onnxruntime")
    generator = tiny_generator(horizon=horizon)
    sampler = SamplerConfig("ddim", 3)
    for batch in (2, 5):  # the hybrid backend's two graphs (batch <= 4 and larger)
        observations = np.random.default_rng(batch).normal(size=(batch, OBS)).astype(np.float32)
        generator.set_backend("eager")
        eager = DiffusionPlanner(generator, proposal=Proposal(sampler), seed=4).plan(observations)
        generator.set_backend(backend)
        fast = DiffusionPlanner(generator, proposal=Proposal(sampler), seed=4).plan(observations)
        torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["matrix", "onnx", "hybrid"])
def test_guided_planning_on_fast_backends_equals_eager(backend):
    """Candidates scored on the backend, the guide differentiating the flat value copy."""
    pytest.importorskip("onnxruntime")
    generator = tiny_generator()
    torch.manual_seed(1)
    value = ValueNetwork(H, OBS + ACT, dim=8, dim_mults=(1, 2), hidden=16).eval()
    config = PlanningConfig(sampler=SamplerConfig("ddim", 3), candidates=6)
    config.guide = GuideConfig(scale=10.0, t_stopgrad=0)
    observations = np.random.default_rng(3).normal(size=(2, OBS)).astype(np.float32)
    plans = {}
    for name in ("eager", backend):
        generator.set_backend(name)
        config.backend = name
        planner = config.make_planner(generator, 1, value_net=value, seed=5)
        plans[name] = planner.plan(observations)
    assert isinstance(planner.proposal.guide.value_net, FlatValueNetwork)
    torch.testing.assert_close(plans[backend], plans["eager"], rtol=1e-4, atol=1e-4)


def test_effective_window_and_candidate_options_are_checked():
    with pytest.raises(ValueError, match=r"effective window must be in 1\.\.7"):
        DiffusionPlanner(tiny_generator(), effective_window=8)
    with pytest.raises(ValueError, match="need a value network"):
        DiffusionPlanner(tiny_generator(), proposal=Proposal(candidates=4))
    with pytest.raises(ValueError, match="'mean' excludes choosing one plan"):
        Selection("mean", value=FirstActionValue())
    with pytest.raises(ValueError, match="selection by value needs a value network"):
        Selection("value")
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        PlanningConfig(candidates=0)
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        Proposal(candidates=0)


def test_averaged_plans_are_the_mean_of_the_candidates_from_the_state():
    generator = tiny_generator()
    observations = np.random.default_rng(2).normal(size=(3, OBS)).astype(np.float32)
    sampler = SamplerConfig("ddim", 5)
    mean = PlanningConfig(sampler=sampler, selection="mean", candidates=4)
    planner = mean.make_planner(generator, 1, seed=7)
    assert planner.proposal.candidates == 4 and planner.selection.rule == "mean"
    averaged = planner.plan(observations)
    candidates = generator.sample(
        np.repeat(observations, 4, axis=0),
        sampler=sampler,
        generator=torch.Generator().manual_seed(7),
    ).reshape(3, 4, H, OBS + ACT)
    torch.testing.assert_close(averaged, candidates.mean(dim=1))
    torch.testing.assert_close(averaged[:, 0, :OBS], torch.as_tensor(observations))
    # the candidates differ, so the mean is none of them
    assert (candidates[:, 0, 1:] - averaged[:, 1:]).abs().max() > 1e-3


@pytest.mark.parametrize("decay", [0.0, 0.7, -0.5])
def test_temporal_ensembling_runs_the_weighted_mean_of_the_planned_actions(decay):
    planner = PlanningConfig(
        temporal_ensemble=4, experimental=ExperimentalPlanning(ensemble_decay=decay)
    ).make_planner(tiny_generator(), 1, seed=2)
    planner.reset(3)
    observations = np.random.default_rng(3).normal(size=(3, OBS)).astype(np.float32)
    plans = []
    for step in range(6):
        action = planner.act(observations)
        plans.append(planner.last_plans)
        # the plan made j steps ago planned this step's action in its row j, weight exp(-m j)
        ages = range(min(step + 1, 4))
        planned = torch.stack([plans[step - j][:, j, OBS:] for j in ages])  # (n, N, act)
        weights = torch.tensor([math.exp(-decay * j) for j in ages])[:, None, None]
        expected = (weights * planned).sum(0) / weights.sum()
        np.testing.assert_allclose(action, expected.numpy(), atol=1e-6)
        if decay and step >= 1:  # unequal weights: not the plain mean
            assert not np.allclose(action, planned.mean(0).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="needs k = 1"):
        DiffusionPlanner(tiny_generator(), effective_window=2, smoothing=Smoothing(2))
    with pytest.raises(ValueError, match=r"must be in 1\.\.7 plans"):
        DiffusionPlanner(tiny_generator(), smoothing=Smoothing(8))
    with pytest.raises(ValueError, match="finite"):
        DiffusionPlanner(tiny_generator(), smoothing=Smoothing(2, float("nan")))
    with pytest.raises(ValueError, match=r"decay must be a finite number >= -20 for 5 plans"):
        DiffusionPlanner(tiny_generator(), smoothing=Smoothing(5, -21.0))
    # the option applies at k = 1 only, so that one config serves a sweep of windows
    config = PlanningConfig(temporal_ensemble=4)
    assert config.make_planner(tiny_generator(), 1).smoothing.plans == 4
    assert config.make_planner(tiny_generator(), 3).smoothing.plans == 1


def test_candidates_are_chosen_by_value():
    generator = tiny_generator()
    value = FirstActionValue()
    best = DiffusionPlanner(
        generator, proposal=Proposal(candidates=32), selection=Selection("value", value), seed=3
    )
    single = DiffusionPlanner(generator, seed=3)
    observations = np.zeros((6, OBS), np.float32)
    steps = torch.zeros(6, dtype=torch.long)
    score = lambda plans: value(generator.normalizer.normalize(plans), steps)  # noqa: E731
    assert torch.all(score(best.plan(observations)) > score(single.plan(observations)))


def test_value_selection_without_guide_steps_runs_the_best_unguided_sample():
    """Guide steps 0: the value network only chooses among the model's own samples."""
    generator, value = tiny_generator(), FirstActionValue()
    config = PlanningConfig(candidates=8, guide=GuideConfig(n_guide_steps=0))
    planner = config.make_planner(generator, 1, value_net=value, seed=3)
    observations = np.random.default_rng(2).normal(size=(3, OBS)).astype(np.float32)
    chosen = planner.plan(observations)
    samples = generator.sample(
        np.repeat(observations, 8, axis=0),
        sampler=config.sampler,
        generator=torch.Generator().manual_seed(3),
    ).reshape(3, 8, H, OBS + ACT)
    normed = generator.normalizer.normalize(samples.flatten(0, 1))
    scores = value(normed, torch.zeros(24, dtype=torch.long)).reshape(3, 8)
    torch.testing.assert_close(chosen, samples[torch.arange(3), scores.argmax(dim=1)])


def test_actions_are_clipped_to_bounds():
    bounds = Execution(action_low=np.full(ACT, -0.01), action_high=np.full(ACT, 0.01))
    planner = DiffusionPlanner(tiny_generator(), execution=bounds)
    planner.reset(3)
    actions = planner.act(np.ones((3, OBS), np.float32) * 4, np.arange(3))
    assert np.abs(actions).max() <= 0.01


# the variance (and std) shrink the step by ~1e-2 (~1e-1) at most steps: larger scales
@pytest.mark.parametrize(("scaling", "scale"), [("none", 1.0), ("std", 10.0), ("variance", 100.0)])
def test_guidance_raises_a_toy_value(scaling, scale):
    generator = tiny_generator()
    value = FirstActionValue()
    guide = ValueGuide(
        value, GuideConfig(scale=scale, n_guide_steps=2, gradient_scaling=scaling, t_stopgrad=0)
    )
    observations = np.zeros((64, OBS), np.float32)
    steps = torch.zeros(64, dtype=torch.long)
    plain = generator.sample(observations, generator=torch.Generator().manual_seed(0))
    guided = generator.sample(observations, generator=torch.Generator().manual_seed(0), guide=guide)
    normed = generator.normalizer.normalize
    assert value(normed(guided), steps).mean() > value(normed(plain), steps).mean() + 0.1
    torch.testing.assert_close(guided[:, 0, :OBS], plain[:, 0, :OBS])  # state kept


def test_guide_scaling_and_stopgrad():
    guide = ValueGuide(
        FirstActionValue(), GuideConfig(scale=0.5, gradient_scaling="std", t_stopgrad=2)
    )
    assert guide.scale_at(torch.tensor(0.04)).item() == pytest.approx(0.5 * 0.2)
    assert not guide.active(1) and guide.active(2)
    x = torch.zeros(2, H, OBS + ACT)
    x[1, 0, OBS:] = 0.5
    values, grad = guide.gradients(x, 3)
    torch.testing.assert_close(values, torch.tensor([0.0, 1.0]))
    expected = torch.zeros(2, H, OBS + ACT)
    expected[:, 0, OBS:] = 1
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="choose one of"):
        GuideConfig(gradient_scaling="log")


@pytest.mark.parametrize("backend", ["auto", "matrix", "onnx", "hybrid"])
def test_backends_of_a_unet_with_attention_compute_the_same_function(backend):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = TemporalUnet(H, OBS + ACT, dim=8, dim_mults=(1, 2), attention=True).eval()
    fast = build_denoiser(model, backend, torch.device("cpu"))
    x, t = torch.randn(6, H, OBS + ACT), torch.randint(0, 5, (6,))
    with torch.no_grad():
        torch.testing.assert_close(fast(x, t), model(x, t), rtol=1e-4, atol=1e-5)
