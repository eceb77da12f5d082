"""Planning options shared by ``diffplan evaluate``, ``diffplan run`` and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from torch import nn

from diffplan.diffusion.backends import Backend, build_denoiser, gradient_network
from diffplan.diffusion.guidance import ReturnGuidanceConfig
from diffplan.diffusion.sampling import SamplerConfig, TrajectoryGenerator
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.execution import Execution
from diffplan.planning.guides import GuideConfig, ValueGuide
from diffplan.planning.planner import DiffusionPlanner
from diffplan.planning.proposal import Proposal, WarmStart
from diffplan.planning.selection import Selection
from diffplan.planning.smoothing import Smoothing


@dataclass
class ConsistencyConfig:
    """Plan selection by a forward dynamics model (evaluate --dynamics)."""

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
class ExperimentalPlanning:
    """Experimental: options measured not to help (docs/notes/README.md; so is
    --planning.selection mean), kept working for experiments."""

    warm_start: WarmStart = field(default_factory=WarmStart)
    """Replan from the last plan shifted by k, noised to a given step (off by default)."""
    ensemble_decay: float = 0.0
    """Weights of the temporal ensemble's mean: the plan made j steps ago counts exp(-m j)
    (0: equal weights; > 0 trusts the newer plans more, < 0 the older ones)."""
    returns: ReturnGuidanceConfig = field(default_factory=ReturnGuidanceConfig)
    """Classifier-free guidance toward a target return (return-conditioned models only)."""


SelectionOption = Literal["auto", "first", "mean", "value", "consistency"]
DEFAULT_CANDIDATES = {"first": 1, "value": 64, "consistency": 16}
"""Plans per decision of each selection when --planning.candidates is left out."""


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
    candidates: int | None = None
    """Plans sampled per decision for --planning.selection value, consistency or mean
    (default: 64 for value, 16 for consistency; mean needs it). Unguided settings without
    --dynamics sample one plan under auto."""
    selection: SelectionOption = "auto"
    """What runs of the candidates: first (one plan), mean (their mean; experimental, it did
    not help), value (the value network's best; with --dynamics among the
    --planning.consistency.keep most consistent), consistency (the forward model's most
    consistent). auto: value in guided settings, consistency with --dynamics, else first."""
    guide: GuideConfig = field(default_factory=GuideConfig)
    """Value guidance options (guided runs)."""
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    """Candidate selection by a forward dynamics model (used when one is given)."""
    temporal_ensemble: int = 1
    """At k = 1 only: each step's target is the mean of what the last N plans predicted for
    it (ACT's temporal ensembling; the planner still replans every step). 1: the newest
    plan's. Settings at k > 1 replan plainly (each setting's record names the ensemble used);
    given with windows that hold no 1 it is refused."""
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
    experimental: ExperimentalPlanning = field(default_factory=ExperimentalPlanning)
    """Options measured not to help (docs/notes/README.md), kept for experiments."""

    def __post_init__(self) -> None:
        if not 0 <= self.tracking_gain <= 1:
            raise ValueError(
                f"--planning.tracking-gain must be in [0, 1], got {self.tracking_gain}"
            )
        if self.tracking_reach < 1:
            raise ValueError(f"--planning.tracking-reach must be >= 1, got {self.tracking_reach}")
        if self.candidates is not None and self.candidates < 1:
            raise ValueError(f"--planning.candidates must be >= 1, got {self.candidates}")
        if self.temporal_ensemble < 1:
            raise ValueError(
                f"--planning.temporal-ensemble must be >= 1, got {self.temporal_ensemble}"
            )

    def ensemble_at(self, effective_window: int) -> int:
        """The temporal ensemble a setting at window ``effective_window`` uses (1: none)."""
        return self.temporal_ensemble if effective_window == 1 else 1

    def selection_for(self, guided: bool, dynamics: bool) -> tuple[str, int]:
        """``(selection, candidates)`` of a setting with (``guided``) or without a value
        network and with or without a forward model (``dynamics``); ValueError naming the
        options for a combination that cannot run."""
        chosen = self.selection
        if chosen == "auto":
            chosen = "value" if guided else "consistency" if dynamics else "first"
        explicit = f"--planning.selection {self.selection}"
        if guided and chosen != "value":
            raise ValueError(
                f"{explicit} does not apply to value-guided settings (--value with "
                "--guided-windows), which choose by value: use value or auto"
            )
        if not guided and chosen == "value":
            raise ValueError(
                f"{explicit} needs a value network: give --value and only --guided-windows, "
                "or choose first, mean, consistency or auto"
            )
        if chosen == "consistency" and not dynamics:
            raise ValueError(
                f"{explicit} needs a forward model: give --dynamics RUN, or choose first, "
                "mean, value or auto"
            )
        if dynamics and chosen in ("first", "mean"):
            raise ValueError(
                f"{explicit} ignores the forward model of --dynamics: choose consistency or "
                "auto, or leave --dynamics out"
            )
        count = self.candidates if self.candidates is not None else DEFAULT_CANDIDATES.get(chosen)
        if chosen == "mean" and (count is None or count < 2):
            raise ValueError(
                f"{explicit} needs --planning.candidates N >= 2 (plans averaged), got {count}"
            )
        if chosen == "first":
            if self.selection == "first" and self.candidates not in (None, 1):
                raise ValueError(
                    f"--planning.candidates {self.candidates} with --planning.selection first "
                    "(one plan): choose mean, value or consistency, or leave the count out"
                )
            count = 1  # auto without a value network or forward model: one plan
        return chosen, count

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
        """A planner at window ``k`` choosing among candidates as :meth:`selection_for`
        says: by ``value_net`` (guided), by a forward model ``consistency``, their mean, or
        one plan; executing actions derived by ``inverse_dynamics``."""
        rule, candidates = self.selection_for(value_net is not None, consistency is not None)
        if candidates == 1:
            rule = "first"  # nothing to choose from
        backend, device = generator.backend, generator.device
        checked = consistency if rule in ("value", "consistency") else None
        guide = None
        if value_net is not None:
            guide = ValueGuide(gradient_network(value_net, backend, device), self.guide)
        return DiffusionPlanner(
            generator,
            effective_window=effective_window,
            proposal=Proposal(self.sampler, candidates, guide, self.experimental.warm_start),
            selection=Selection(
                rule,  # type: ignore[arg-type]  # selection_for resolves "auto"
                # candidates are scored without gradients, so on the generator's fast backend
                value=build_denoiser(value_net, backend, device) if rule == "value" else None,
                consistency=checked,
                keep=self.consistency.keep,
                rows=self.consistency.rows,
                simulate_tracking=self.consistency.simulate_tracking and checked is not None,
            ),
            execution=Execution(
                inverse_dynamics,
                self.track_states,
                self.tracking_gain,
                self.tracking_reach,
                action_low,
                action_high,
            ),
            smoothing=Smoothing(
                self.ensemble_at(effective_window), self.experimental.ensemble_decay
            ),
            seed=seed,
        )
