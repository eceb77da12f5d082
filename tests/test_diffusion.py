"""Schedules, the DDPM scheduler, masks, loss weights, the loss and the sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffplan.data import Normalizer
from diffplan.diffusion import (
    DDPMScheduler,
    SamplerConfig,
    TrajectoryGenerator,
    denoising_loss,
    impose,
    loss_weights,
    make_betas,
    sample_windows,
    state_mask,
    state_values,
)
from diffplan.models import TemporalUnet

# --- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("steps", [5, 20, 100])
def test_schedules_decrease_to_noise_and_are_stored_float32(kind: str, steps: int) -> None:
    betas = make_betas(kind, steps)  # type: ignore[arg-type]
    assert betas.dtype == torch.float64 and betas.shape == (steps,)
    assert ((betas > 0) & (betas <= 0.999)).all()
    scheduler = DDPMScheduler(steps, schedule=kind)  # type: ignore[arg-type]
    alpha_bar = scheduler.alphas_cumprod
    assert alpha_bar.dtype == torch.float32 and scheduler.betas.dtype == torch.float32
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()
    assert alpha_bar[0] > 0.8 and alpha_bar[-1] < 0.02


def test_cosine_schedule_follows_its_closed_form() -> None:
    alpha_bar = torch.cumprod(1 - make_betas("cosine", 20), 0)
    f = lambda t: math.cos((t / 20 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert alpha_bar[9].item() == pytest.approx(f(10) / f(0), rel=1e-12)


def test_unknown_options_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"\('cosine', 'linear'\)"):
        make_betas("quadratic", 20)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\('x0', 'epsilon'\)"):
        DDPMScheduler(20, prediction_type="v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1\.\.20 steps"):
        DDPMScheduler(20).timesteps(21)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        DDPMScheduler(20).step(torch.zeros(1, 2, 2), 3, torch.zeros(1, 2, 2), method="euler")  # type: ignore[arg-type]


# --- scheduler -------------------------------------------------------------------------------


def test_add_noise_matches_equation_4() -> None:
    scheduler = DDPMScheduler(20)
    x0, noise, t = torch.randn(3, 8, 5), torch.randn(3, 8, 5), torch.tensor([0, 10, 19])
    a = scheduler.alphas_cumprod[t][:, None, None]
    expected = a.sqrt() * x0 + (1 - a).sqrt() * noise
    torch.testing.assert_close(scheduler.add_noise(x0, noise, t), expected)


@pytest.mark.parametrize("prediction", ["x0", "epsilon"])
def test_exact_model_output_recovers_the_posterior_mean(prediction: str) -> None:
    # Given the true x0 (or the true noise), a step's mean is q(x_{t-1} | x_t, x0)'s (eq. 7).
    scheduler = DDPMScheduler(20, prediction_type=prediction)  # type: ignore[arg-type]
    x0, noise = torch.randn(2, 8, 5), torch.randn(2, 8, 5)
    t = 12
    x_t = scheduler.add_noise(x0, noise, torch.full((2,), t))
    output = scheduler.step(scheduler.target(x0, noise), t, x_t, generator=torch.Generator())
    torch.testing.assert_close(output.pred_original_sample, x0, rtol=1e-4, atol=1e-4)
    betas = scheduler.betas.double()
    alpha_bar = torch.cumprod(1 - betas, 0)
    mean = (alpha_bar[t - 1].sqrt() * betas[t] / (1 - alpha_bar[t])) * x0.double() + (
        (1 - betas[t]).sqrt() * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
    ) * x_t.double()
    variance = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * betas[t]
    assert scheduler.posterior_variance(t).item() == pytest.approx(variance.item(), rel=1e-4)
    z = (output.prev_sample.double() - mean) / variance.sqrt()
    assert abs(z.mean().item()) < 0.3 and 0.7 < z.std().item() < 1.3


def test_last_step_is_deterministic_and_returns_x0_for_x0_prediction() -> None:
    scheduler = DDPMScheduler(20)
    x0, x_t = torch.randn(2, 8, 5), torch.randn(2, 8, 5)
    torch.testing.assert_close(scheduler.step(x0, 0, x_t).prev_sample, x0)


def test_timesteps_are_evenly_spaced_chains_ending_at_zero() -> None:
    scheduler = DDPMScheduler(20)
    assert scheduler.timesteps().tolist() == list(range(19, -1, -1))
    assert scheduler.timesteps(5).tolist() == [19, 14, 10, 5, 0]
    assert scheduler.timesteps(3, start=6).tolist() == [6, 3, 0]
    assert scheduler.timesteps(1, start=4).tolist() == [4]
    # A strided step is final when it jumps to -1: no noise, prediction returned.
    x0 = torch.randn(1, 8, 5)
    torch.testing.assert_close(
        scheduler.step(x0, 3, torch.randn(1, 8, 5), prev_t=-1).prev_sample, x0
    )


def test_ddim_with_eta_one_is_the_ddpm_step() -> None:
    scheduler = DDPMScheduler(20, prediction_type="epsilon")
    output, x_t = torch.randn(4, 8, 5), torch.randn(4, 8, 5)
    for t, prev_t in ((12, 11), (19, 14)):
        ddpm = scheduler.step(
            output, t, x_t, prev_t=prev_t, generator=torch.Generator().manual_seed(1)
        )
        ddim = scheduler.step(
            output,
            t,
            x_t,
            prev_t=prev_t,
            method="ddim",
            eta=1.0,
            generator=torch.Generator().manual_seed(1),
        )
        torch.testing.assert_close(ddim.prev_sample, ddpm.prev_sample, rtol=1e-4, atol=1e-5)


def test_dpm_solver_first_step_is_deterministic_ddim() -> None:
    scheduler = DDPMScheduler(20)
    output, x_t = torch.randn(4, 8, 5), torch.randn(4, 8, 5)
    ddim = scheduler.step(output, 15, x_t, prev_t=10, method="ddim")
    dpm = scheduler.step(output, 15, x_t, prev_t=10, method="dpm-solver++")
    torch.testing.assert_close(dpm.prev_sample, ddim.prev_sample, rtol=1e-5, atol=1e-5)


class GaussianOracle(torch.nn.Module):
    """The exact x0-predictor E[x0 | x_t] for data x0 ~ N(mean, std^2) in every entry."""

    def __init__(self, scheduler: DDPMScheduler, mean: float, std: float) -> None:
        super().__init__()
        self.alpha_bar, self.mean, self.var = scheduler.alphas_cumprod, mean, std**2

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alpha_bar[t].sqrt()[:, None, None]
        gain = a * self.var / (a**2 * self.var + 1 - a**2)
        return self.mean + gain * (x - a * self.mean)


def gaussian_samples(scheduler: DDPMScheduler, method: str, steps: int) -> torch.Tensor:
    """4000 x 4 samples of the sampler with the exact denoiser of N(1, 0.5^2) data."""
    return sample_windows(
        GaussianOracle(scheduler, mean=1.0, std=0.5),
        scheduler,
        torch.zeros(4000, 2, 2),
        torch.zeros(2, 2, dtype=torch.bool),
        sampler=SamplerConfig(method, steps),  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(0),
    )


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_long_chains_reproduce_gaussian_data_with_an_exact_denoiser(method: str) -> None:
    samples = gaussian_samples(DDPMScheduler(1000), method, 1000)
    assert samples.mean().item() == pytest.approx(1.0, abs=0.02)
    assert samples.std().item() == pytest.approx(0.5, rel=0.03)


def test_deterministic_samplers_converge_to_the_probability_flow_solution() -> None:
    # For N(mu, s^2) data the probability-flow ODE keeps (x_t - a_t mu) / sqrt(a_t^2 s^2 +
    # sigma_t^2) constant, so the exact x_0 of each starting noise is known in closed form.
    scheduler = DDPMScheduler(20)
    noise = torch.randn(4000, 2, 2, generator=torch.Generator().manual_seed(0))
    alpha_bar = scheduler.alphas_cumprod[-1]
    exact = 1.0 + 0.5 * (noise - alpha_bar.sqrt()) / (0.25 * alpha_bar + 1 - alpha_bar).sqrt()

    def error(method: str, steps: int) -> float:
        return (gaussian_samples(scheduler, method, steps) - exact).abs().mean().item()

    assert error("ddim", 20) < 0.6 * error("ddim", 10) < 0.6 * error("ddim", 5)  # first order
    assert error("dpm-solver++", 5) < 0.2 * error("ddim", 5)  # second order
    assert error("dpm-solver++", 20) < 0.005


def test_warm_start_noises_the_init_to_the_first_step() -> None:
    # An identity x0-predictor returns its input; one step from t = 0 then returns the
    # init noised to step 0, i.e. the init up to sqrt(1 - a_bar_0) noise.
    scheduler = DDPMScheduler(20)
    init = torch.randn(3, 8, 5)
    identity = lambda x, t: x  # noqa: E731
    out = sample_windows(
        identity,  # type: ignore[arg-type]
        scheduler,
        torch.zeros(3, 8, 5),
        torch.zeros(8, 5, dtype=torch.bool),
        sampler=SamplerConfig("ddim"),
        timesteps=scheduler.timesteps(1, start=0),
        init=init,
        generator=torch.Generator().manual_seed(0),
    )
    noise_std = (1 - scheduler.alphas_cumprod[0]).sqrt().item()
    residual = out - scheduler.alphas_cumprod[0].sqrt() * init
    assert residual.std().item() == pytest.approx(noise_std, rel=0.2)


# --- masks and loss --------------------------------------------------------------------------


def test_state_mask_fixes_row_zero_observations() -> None:
    mask = state_mask(4, 3, 2)
    assert mask.shape == (4, 5) and mask.dtype == torch.bool
    assert mask[0, :3].all() and mask.sum() == 3
    obs = torch.randn(2, 3)
    values = state_values(obs, 4, 2)
    x = impose(torch.randn(2, 4, 5), mask, values)
    torch.testing.assert_close(x[:, 0, :3], obs)


def test_loss_weights_weight_the_first_action_and_discount_rows() -> None:
    weights = loss_weights(4, 3, 2, action_weight=10.0)
    assert weights.dtype == torch.float32
    assert (weights[0, 3:] == 10).all() and (weights[0, :3] == 1).all() and (weights[1:] == 1).all()
    discounted = loss_weights(4, 3, 2, action_weight=10.0, discount=0.5)
    rows = np.array([1, 0.5, 0.25, 0.125]) / np.mean([1, 0.5, 0.25, 0.125])
    np.testing.assert_allclose(discounted[:, 0].numpy(), rows, rtol=1e-6)
    assert (discounted[0, 3:] == 10).all()
    with pytest.raises(ValueError):
        loss_weights(4, 3, 2, discount=0.0)


class Constant(torch.nn.Module):
    """Outputs a fixed tensor, whatever the input (to probe the loss)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.output


def test_loss_ignores_padded_rows_and_fixed_entries_and_weights_actions() -> None:
    scheduler = DDPMScheduler(20)
    x0 = torch.randn(2, 4, 5)
    t, noise = torch.tensor([3, 9]), torch.randn(2, 4, 5)
    valid = torch.tensor([[True] * 4, [True, True, False, False]])
    fixed, weights = state_mask(4, 3, 2), loss_weights(4, 3, 2, action_weight=10.0)

    def loss(output: torch.Tensor) -> float:
        return denoising_loss(
            Constant(output), scheduler, x0, valid, t, noise, fixed=fixed, weights=weights
        ).item()

    assert loss(x0) == 0.0
    off = x0.clone()
    off[1, 2:] += 5.0  # padded rows of window 1
    off[:, 0, :3] += 5.0  # the conditioned state
    assert loss(off) == 0.0
    first_action, later_obs = x0.clone(), x0.clone()
    first_action[0, 0, 3] += 1.0
    later_obs[0, 1, 0] += 1.0
    assert loss(first_action) == pytest.approx(10 * loss(later_obs))
    assert loss(later_obs) == pytest.approx(1.0 / (2 * 4 * 5))


# --- sampling --------------------------------------------------------------------------------


class RecordingGuide:
    """Pushes every entry up by 100 and records the states it saw."""

    n_guide_steps = 2

    def __init__(self) -> None:
        self.seen: list[tuple[int, torch.Tensor]] = []

    def active(self, t: int) -> bool:
        return t >= 1

    def scale_at(self, posterior_variance: torch.Tensor) -> torch.Tensor:
        return torch.tensor(100.0)

    def gradients(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append((t, x[:, 0, :3].clone()))
        return x.sum((1, 2)), torch.ones_like(x)


def test_sampling_imposes_the_state_at_every_step_and_calls_the_guide() -> None:
    model = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2)).eval()
    scheduler = DDPMScheduler(10)
    fixed = state_mask(8, 3, 2)
    obs = torch.randn(4, 3)
    guide = RecordingGuide()
    x = sample_windows(
        model,
        scheduler,
        state_values(obs, 8, 2),
        fixed,
        guide=guide,
        generator=torch.Generator().manual_seed(0),
    )
    # twice per active step (t = 9 .. 1), never at t = 0; the state re-imposed after each move
    assert [t for t, _ in guide.seen] == [t for t in range(9, 0, -1) for _ in range(2)]
    for _, state in guide.seen:
        torch.testing.assert_close(state, obs)
    torch.testing.assert_close(x[:, 0, :3], obs)
    assert x.shape == (4, 8, 5)


def test_generator_works_in_data_units_and_is_seeded() -> None:
    normalizer = Normalizer("gaussian", np.array([10.0, -5.0, 0.0, 1.0, 2.0]), np.full(5, 3.0))
    model = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2))
    generator = TrajectoryGenerator(model, DDPMScheduler(5), normalizer, obs_dim=3)
    obs = np.array([[12.0, -4.0, 1.0], [7.0, -8.0, 0.5]])
    first = generator.sample(obs, generator=torch.Generator().manual_seed(1))
    again = generator.sample(obs, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first[:, 0, :3], torch.as_tensor(obs, dtype=torch.float32))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        generator.sample(np.zeros((2, 5)))
