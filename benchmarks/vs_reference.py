"""Speed against the reference Diffuser (jannerm/diffuser), both run in one process on one thread.

    python benchmarks/vs_reference.py [--quick] [--reps 15]

Builds the same network both ways (H = 8, dim 32, mults (1, 2, 4), 20 diffusion steps,
random weights; the parameter counts must match), then times each figure with the two
implementations interleaved call by call, and prints medians:

- train step (loss + backward + Adam) on a fixed batch: the reference's
  ``GaussianDiffusion.loss`` and ``torch.optim.Adam`` against diffplan's
  :func:`~diffplan.diffusion.denoising_loss` and the trainer's optimiser (fused Adam);
- plan: the reference's 20-step DDPM sampler against diffplan's default planner sampler
  (``PlanningConfig().sampler``, DPM-Solver++ 5 steps) on the default backend;
- guided plan: the reference's ``n_step_guided_p_sample`` (2 guide steps, scale 0.1,
  t_stopgrad 2, the paper's locomotion setting) against the default value guidance;
- closed-loop decisions at batch 1 in Walker2d-v5: plan, take the first action, step.

Each time is also given as a multiple of the FLOP limit: the FLOPs of the call
(``torch.utils.flop_counter.FlopCounterMode`` on the eager network; guided plans count the
value network's backward too) over this thread's float32 matrix-product peak, measured in
the same run. The reference lives in ``../shared/reference`` beside the repository and
needs ``einops``; without either the script prints why and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffplan.data import Normalizer
from diffplan.diffusion import (
    DDPMScheduler,
    TrajectoryGenerator,
    denoising_loss,
    loss_weights,
    state_mask,
)
from diffplan.diffusion.backends import gradient_network
from diffplan.models import TemporalUnet, ValueNetwork
from diffplan.planning import PlanningConfig, ValueGuide
from diffplan.training.trainer import make_optimizer

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
OBS, ACT, HORIZON, STEPS, DIM, MULTS = 17, 6, 8, 20, 32, (1, 2, 4)
Calls = tuple[Callable[[], object], Callable[[], object]]
GUIDE = {"n_guide_steps": 2, "scale": 0.1, "t_stopgrad": 2, "scale_grad_by_std": True}


def load_reference():  # type: ignore[no-untyped-def]
    """The reference's classes, or ``None`` (with the reason printed) where absent."""
    if not (REFERENCE / "load_reference.py").is_file():
        print(f"vs_reference: skipped, no reference Diffuser at {REFERENCE}")
        return None
    if importlib.util.find_spec("einops") is None:
        print("vs_reference: skipped, the reference needs einops (pip install einops)")
        return None
    sys.path.insert(0, str(REFERENCE))
    from load_reference import load_reference as load

    return load()


def peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    """Best GFLOP/s of a ``size``-cubed float32 matrix product on torch's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def interleaved(
    first: Callable[[], object], second: Callable[[], object], reps: int
) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, called alternately ``reps`` times each
    (after two warm-up calls each)."""
    for _ in range(2):
        first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, out in ((first, times[0]), (second, times[1])):
            began = time.perf_counter()
            fn()
            out.append(time.perf_counter() - began)
    return statistics.median(times[0]), statistics.median(times[1])


def counts_of(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Pair:
    """The same denoiser and value network built by the reference and by diffplan."""

    def __init__(self, ref) -> None:  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        self.ref_unet = ref.TemporalUnet(HORIZON, OBS + ACT, OBS, dim=DIM, dim_mults=MULTS)
        self.ref = ref.GaussianDiffusion(
            self.ref_unet, HORIZON, OBS, ACT, n_timesteps=STEPS, loss_type="l2",
            clip_denoised=False, predict_epsilon=False, action_weight=10,
        )  # fmt: skip
        ref_value = ref.ValueFunction(HORIZON, OBS + ACT, OBS, dim=DIM, dim_mults=MULTS)
        self.ref_value = ref.ValueDiffusion(
            ref_value, HORIZON, OBS, ACT, n_timesteps=STEPS, loss_type="value_l2"
        )
        self.ref_guide = ref.ValueGuide(self.ref_value)
        self.ref_guided_sample = ref.n_step_guided_p_sample
        self.unet = TemporalUnet(HORIZON, OBS + ACT, dim=DIM, dim_mults=MULTS)
        self.value = ValueNetwork(HORIZON, OBS + ACT, dim=DIM, dim_mults=MULTS).eval()
        self.params, ref_params = (counts_of(m) for m in (self.unet, self.ref_unet))
        if self.params != ref_params:
            raise RuntimeError(f"U-Net sizes differ: diffplan {self.params:,}, ref {ref_params:,}")
        # the value networks differ in their head (reported, not required to match)
        self.value_params = (counts_of(self.value), counts_of(ref_value))
        self.config = PlanningConfig()
        normalizer = Normalizer("gaussian", np.zeros(OBS + ACT), np.ones(OBS + ACT))
        self.generator, self.eager = (
            TrajectoryGenerator(self.unet, DDPMScheduler(STEPS), normalizer, OBS, backend=backend)
            for backend in (self.config.backend, "eager")
        )

    # --- training --------------------------------------------------------------------------

    def train_steps(self, batch: int) -> tuple[Callable[[], object], Callable[[], object]]:
        """One reference and one diffplan train step on the same fixed batch."""
        x = torch.randn(batch, HORIZON, OBS + ACT)
        cond = {0: x[:, 0, ACT:]}  # the reference orders rows [act | obs]
        ref_optimizer = torch.optim.Adam(self.ref.parameters(), lr=2e-4)

        def ref_step() -> None:
            loss, _ = self.ref.loss(x, cond)
            ref_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ref_optimizer.step()

        scheduler = DDPMScheduler(STEPS)
        fixed, weights = state_mask(HORIZON, OBS, ACT), loss_weights(HORIZON, OBS, ACT)
        valid = torch.ones(batch, HORIZON, dtype=torch.bool)
        t, noise = torch.randint(STEPS, (batch,)), torch.randn(x.shape)

        optimizer = make_optimizer(self.unet, 2e-4)

        def step() -> None:
            loss = denoising_loss(
                self.unet, scheduler, x, valid, t, noise, fixed=fixed, weights=weights
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        self.unet.train()
        return ref_step, step

    def eager_train_flops(self, batch: int) -> tuple[int, int]:
        ref_step, _ = self.train_steps(batch)
        scheduler = DDPMScheduler(STEPS)
        x = torch.randn(batch, HORIZON, OBS + ACT)
        fixed, weights = state_mask(HORIZON, OBS, ACT), loss_weights(HORIZON, OBS, ACT)
        valid = torch.ones(batch, HORIZON, dtype=torch.bool)
        t, noise = torch.randint(STEPS, (batch,)), torch.randn(x.shape)

        def ours() -> None:
            loss = denoising_loss(
                self.unet, scheduler, x, valid, t, noise, fixed=fixed, weights=weights
            )
            loss.backward()

        return count_flops(ref_step), count_flops(ours)

    # --- planning --------------------------------------------------------------------------

    def plans(
        self, batch: int, guided: bool, *, eager: bool = False
    ) -> tuple[Callable[[], object], Callable[[], object]]:
        """A reference and a diffplan plan of ``batch`` windows from random observations."""
        obs = torch.randn(batch, OBS)
        ref_kwargs = (
            {"sample_fn": self.ref_guided_sample, "guide": self.ref_guide, **GUIDE}
            if guided
            else {}
        )
        generator = self.eager if eager else self.generator
        guide = (
            ValueGuide(
                gradient_network(self.value, generator.backend, obs.device), self.config.guide
            )
            if guided
            else None
        )

        def ref_plan() -> None:
            self.ref.conditional_sample({0: obs}, verbose=False, **ref_kwargs)

        def plan() -> None:
            generator.sample(obs, sampler=self.config.sampler, guide=guide)

        return ref_plan, plan

    def plan_flops(self, batch: int, guided: bool) -> tuple[int, int]:
        """FLOPs of an eager reference and diffplan plan. ``FlopCounterMode`` cannot follow
        ``autograd.grad``, so guidance is counted apart: a value forward and backward per
        guide step (the reference computes it at all 20 steps, zeroing it below t_stopgrad)."""
        ref_flops, flops = (count_flops(fn) for fn in self.plans(batch, False, eager=True))
        if not guided:
            return ref_flops, flops
        x = torch.randn(batch, HORIZON, OBS + ACT, requires_grad=True)
        t, cond = torch.zeros(batch, dtype=torch.long), {0: x[:, 0, ACT:].detach()}
        ref_value = count_flops(lambda: self.ref_value(x, cond, t).sum().backward())
        value = count_flops(lambda: self.value(x, t).sum().backward())
        chain = self.generator.timesteps(self.config.sampler).tolist()
        guide = ValueGuide(self.value, self.config.guide)
        guided_steps = sum(guide.active(step) for step in chain)
        guide_steps = self.config.guide.n_guide_steps
        return (
            ref_flops + GUIDE["n_guide_steps"] * STEPS * ref_value,
            flops + guide_steps * guided_steps * value,
        )

    def decisions(self) -> tuple[Callable[[], object], Callable[[], object]]:
        """Closed-loop decisions at batch 1 in Walker2d-v5 (plan, first action, env step)."""
        envs = [gym.make("Walker2d-v5") for _ in range(2)]
        observations = [env.reset(seed=i)[0][None] for i, env in enumerate(envs)]
        planner = self.config.make_planner(self.generator, 1)
        planner.reset(1)

        def advance(which: int, action: np.ndarray) -> None:
            obs, _, terminated, truncated, _ = envs[which].step(action)
            observations[which] = (envs[which].reset()[0] if terminated or truncated else obs)[None]

        def ref_decide() -> None:
            cond = {0: torch.as_tensor(observations[0], dtype=torch.float32)}
            plans = self.ref.conditional_sample(cond, verbose=False).trajectories
            advance(0, plans[0, 0, :ACT].numpy())

        def decide() -> None:
            advance(1, planner.act(observations[1])[0])

        return ref_decide, decide


def print_table(rows: list[tuple[str, float, float, tuple[int, int]]], peak: float) -> None:
    """One line per figure: both medians in ms, their ratio, each over its FLOP limit."""
    print(
        f"{'figure':<34} {'ref ms':>9} {'ours ms':>9} {'ratio':>8} {'ref xFL':>8} {'ours xFL':>8}"
    )
    for label, ref_s, our_s, flops in rows:
        limits = [f / (peak * 1e9) for f in flops]
        print(
            f"{label:<34} {1e3 * ref_s:9.2f} {1e3 * our_s:9.2f} {ref_s / our_s:7.1f}x "
            f"{ref_s / limits[0]:8.1f} {our_s / limits[1]:8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (few reps)")
    parser.add_argument("--reps", type=int, default=15, help="timed calls of each, interleaved")
    args = parser.parse_args()
    ref = load_reference()
    if ref is None:
        return
    torch.set_num_threads(1)
    reps = 2 if args.quick else args.reps
    train_batches, plan_batches, guided_batch = (
        ((8,), (1,), 4) if args.quick else ((32, 64, 256), (1, 10, 64), 64)
    )
    pair = Pair(ref)
    # the peak, measured before every figure (the machine is shared): the best counts
    peaks: list[float] = []
    rows: list[tuple[str, float, float, tuple[int, int]]] = []

    def measure(label: str, calls: Calls, flops: tuple[int, int], repeats: int = reps) -> None:
        peaks.append(peak_gflops(256 if args.quick else 1024))
        rows.append((label, *interleaved(*calls, repeats), flops))

    for batch in train_batches:
        measure(
            f"train step, batch {batch}", pair.train_steps(batch), pair.eager_train_flops(batch)
        )
    for batch in plan_batches:
        measure(f"plan, batch {batch}", pair.plans(batch, False), pair.plan_flops(batch, False))
    flops = pair.plan_flops(guided_batch, True)
    measure(f"guided plan, batch {guided_batch}", pair.plans(guided_batch, True), flops)
    measure("closed-loop decision, batch 1", pair.decisions(), pair.plan_flops(1, False), reps * 4)
    print(
        f"one thread; H = {HORIZON}, dim {DIM}, mults {MULTS}, {STEPS} diffusion steps, "
        f"U-Net {pair.params:,} parameters in both, value network {pair.value_params[0]:,} "
        f"(ref {pair.value_params[1]:,}); planner: {pair.config.sampler.method} "
        f"{pair.config.sampler.steps} steps, backend {pair.generator.backend}; matrix-product "
        f"peak {max(peaks):.0f} GFLOP/s (lowest of {len(peaks)} measurements {min(peaks):.0f})"
    )
    print_table(rows, max(peaks))
    ref_s, our_s = rows[-1][1:3]
    print(f"closed-loop decisions/s: reference {1 / ref_s:.1f}, diffplan {1 / our_s:.1f}")


if __name__ == "__main__":
    main()
