"""Planning options shared by ``diffplan evaluate``, ``diffplan run`` and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from diffplan.diffusion.backends import Backend, gradient_network
from diffplan.diffusion.guidance import ReturnGuidanceConfig
from diffplan.diffusion.sampling import SamplerConfig, TrajectoryGenerator
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.guides import GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner, WarmStart


@dataclass
class ConsistencyConfig:
    """Plan selection by a forward dynamics model (evaluate --dynamics)."""

    candidates: int = 16
    """Plans sampled per decision in unguided runs; the most consistent one runs."""
    keep: float = 0.25
    """Guided runs: the value network picks among this fraction of the candidates, the most
    consistent ones."""
    rows: int | None = None
    """Transitions of each candidate that are checked (default: the k that will run; at
    k = 1 a longer check looks further ahead)."""
    simulate_tracking: bool = False
    """With --planning.track-states: follow each candidate's states in the forward model with
    the inverse dynamics model's actions, closed loop, as the walker will, instead of
    checking each planned action one step at a time."""


@dataclass
class PlanningConfig:
    """How plans are sampled (unguided and value-guided runs) and how the denoiser runs."""

    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig("dpm-solver++", 5))
    """Denoising method and number of steps. Default: DPM-Solver++ in 5 steps, which scored
    as well as the report's 20 DDPM steps (docs/PLANNING.md) at 4x the speed; the report's
    sampler is --planning.sampler.method ddpm --planning.sampler.steps 20."""
    backend: Backend = "auto"
    """How the denoiser runs: eager PyTorch, matrix (its matrix-product copy), ONNX Runtime
    (CPU), hybrid (CPU: ONNX Runtime up to 4 windows, the matrix copy above), or auto (hybrid
    on a CPU, eager on a GPU); all compute the same function."""
    warm_start: WarmStart = field(default_factory=WarmStart)
    """Replan from the last plan shifted by k, noised to a given step (off by default)."""
    candidates: int = 64
    """Plans sampled per decision in guided runs; the value network picks the best."""
    average: int = 1
    """Unguided runs without a forward model: plans sampled per decision whose mean runs
    (1: one plan). The mean cancels the sampler's noise around the model's expected plan."""
    guide: GuideConfig = field(default_factory=GuideConfig)
    """Value guidance options (guided runs)."""
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    """Candidate selection by a forward dynamics model (used when one is given)."""
    temporal_ensemble: int = 1
    """At k = 1: each step's target is the mean of what the last N plans predicted for it
    (ACT's temporal ensembling; the planner still replans every step). 1: the newest plan's."""
    ensemble_decay: float = 0.0
    """Weights of that mean: the plan made j steps ago counts exp(-m j) (0: equal weights;
    > 0 trusts the newer plans more, < 0 the older ones)."""
    track_states: bool = False
    """With an inverse dynamics model (evaluate --inverse-dynamics): derive each action from
    the real current state and the next planned state (feedback), not from the plan alone."""
    tracking_gain: float = 1.0
    """With --planning.track-states: the fraction of the gap between the real and the planned
    state that each step asks to close (1: all of it; 0: follow the planned change of state
    from where the walker is)."""
    tracking_reach: int = 1
    """With --planning.track-states: aim each action at the planned state this many steps
    ahead (fewer near the plan's end); above 1 needs an inverse model trained with at least
    that --reach (diffplan train-dynamics --kind inverse --reach M)."""
    returns: ReturnGuidanceConfig = field(default_factory=ReturnGuidanceConfig)
    """Classifier-free guidance toward a target return (return-conditioned models only)."""

    def __post_init__(self) -> None:
        if not 0 <= self.tracking_gain <= 1:
            raise ValueError(
                f"--planning.tracking-gain must be in [0, 1], got {self.tracking_gain}"
            )
        if self.tracking_reach < 1:
            raise ValueError(f"--planning.tracking-reach must be >= 1, got {self.tracking_reach}")
        if self.average < 1:
            raise ValueError(f"--planning.average must be >= 1, got {self.average}")
        if self.temporal_ensemble < 1:
            raise ValueError(
                f"--planning.temporal-ensemble must be >= 1, got {self.temporal_ensemble}"
            )

    def make_planner(
        self,
        generator: TrajectoryGenerator,
        effective_window: int,
        *,
        value_net: nn.Module | None = None,
        consistency: ForwardConsistency | None = None,
        inverse_dynamics: ActionsFromStates | None = None,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        seed: int = 0,
    ) -> DiffusionPlanner:
        """A planner at window ``k``: value-guided with candidates when ``value_net`` is given;
        choosing consistent candidates with a forward model ``consistency``; else running
        the mean of ``average`` plans; executing actions derived by ``inverse_dynamics``."""
        guided = value_net is not None
        if consistency is not None and self.average > 1:
            raise ValueError(
                "--planning.average and --dynamics both choose what runs from several plans; "
                "use one of them"
            )
        average = not guided and self.average > 1
        candidates = self.candidates if guided else self.average
        if consistency is not None and not guided:
            candidates = self.consistency.candidates
        return DiffusionPlanner(
            generator,
            effective_window=effective_window,
            num_candidates=candidates,
            average=average,
            value_net=value_net,
            consistency=consistency,
            consistency_keep=self.consistency.keep,
            consistency_rows=self.consistency.rows,
            simulate_tracking=self.consistency.simulate_tracking,
            inverse_dynamics=inverse_dynamics,
            track_states=self.track_states,
            tracking_gain=self.tracking_gain,
            tracking_reach=self.tracking_reach,
            guide=(
                ValueGuide(
                    gradient_network(value_net, generator.backend, generator.device), self.guide
                )
                if value_net is not None
                else None
            ),
            sampler=self.sampler,
            warm_start=self.warm_start,
            temporal_ensemble=self.temporal_ensemble if effective_window == 1 else 1,
            ensemble_decay=self.ensemble_decay,
            action_low=action_low,
            action_high=action_high,
            seed=seed,
        )
