"""Selection: which of a decision's candidate plans runs.

- ``first``: the one plan sampled (one candidate);
- ``mean``: the candidates' mean plan, row by row, which cancels the sampler's noise around
  the model's expected plan (the conditioned first state stays exact);
- ``value``: the value network's best; with a forward dynamics model as well, the best among
  the ``keep`` fraction of most consistent candidates;
- ``consistency``: the most consistent one, the smallest error between each planned state
  and the forward model's prediction from the previous planned state and action, over
  ``rows`` transitions (default: the ``k`` that will run). With ``simulate_tracking`` the
  error is that of following the plan's states in the forward model with the execution's
  inverse-dynamics actions, closed loop, as tracking does in the environment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from diffplan.data import Normalizer
from diffplan.diffusion.sampling import TrajectoryGenerator
from diffplan.planning.dynamics import ForwardConsistency
from diffplan.planning.execution import Execution

Rule = Literal["first", "mean", "value", "consistency"]
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x (B, H, D) normalised, t (B,)) -> (B,)`` values."""
SIMULATED_TRACKING_NEEDS = (
    "simulating the tracking (--planning.consistency.simulate-tracking) needs a forward "
    "dynamics model (--dynamics) and --planning.track-states"
)


@dataclass
class Selection:
    """One of the rules of the module docstring, with the models it needs."""

    rule: Rule = "first"
    value: Scorer | None = None
    """Rates candidates (``value``)."""
    consistency: ForwardConsistency | None = None
    """Forward dynamics error of candidates (``consistency``; with ``value``, a filter)."""
    keep: float = 0.25
    """With both models: the fraction of most consistent candidates the value chooses from."""
    rows: int | None = None
    """Transitions of each candidate checked for consistency (default: the ``k`` that run)."""
    simulate_tracking: bool = False
    """Check consistency by following the plan with the execution's tracking."""

    def __post_init__(self) -> None:
        needs = {"value": self.value, "consistency": self.consistency}
        if self.rule in needs and needs[self.rule] is None:
            model = "a value network" if self.rule == "value" else "a forward dynamics model"
            raise ValueError(f"selection by {self.rule} needs {model}")
        if self.rule in ("first", "mean") and (self.value, self.consistency) != (None, None):
            raise ValueError(
                f"selection {self.rule!r} excludes choosing one plan (by value or consistency)"
            )
        if self.rule == "consistency" and self.value is not None:
            raise ValueError("selection by consistency takes no value network: use 'value'")
        if not 0 < self.keep <= 1:
            raise ValueError(f"consistency keep must be in (0, 1], got {self.keep}")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"consistency rows must be >= 1, got {self.rows}")
        if self.simulate_tracking and self.consistency is None:
            raise ValueError(SIMULATED_TRACKING_NEEDS)

    def check(self, generator: TrajectoryGenerator) -> None:
        """Raise ValueError where the forward model's dimensions are not ``generator``'s."""
        if self.consistency is not None:
            self.consistency.check_dims(generator.obs_dim, generator.act_dim)

    def choose(
        self, candidates: torch.Tensor, normalizer: Normalizer, k: int, execution: Execution
    ) -> torch.Tensor:
        """The plans ``(N, H, D)`` that run among ``candidates (N, C, H, D)`` (raw units),
        for a window of ``k`` actions executed by ``execution``."""
        if candidates.shape[1] == 1:
            return candidates[:, 0]
        if self.rule == "mean":
            return candidates.mean(dim=1)
        best = self.best(candidates, normalizer, k, execution)
        return candidates[torch.arange(len(candidates), device=best.device), best]

    def best(
        self, candidates: torch.Tensor, normalizer: Normalizer, k: int, execution: Execution
    ) -> torch.Tensor:
        """Index ``(N,)`` of the plan to keep among ``candidates (N, C, H, D)`` (raw units)."""
        count, num = candidates.shape[:2]
        flat = candidates.flatten(0, 1)
        scores = torch.zeros(count, num, device=flat.device)
        if self.value is not None:
            normed = normalizer.normalize(flat)
            with torch.inference_mode():
                steps = torch.zeros(len(normed), dtype=torch.long, device=normed.device)
                scores = self.value(normed, steps).reshape(count, num)
        if self.consistency is not None:
            errors = self._errors(flat, self.rows or k, execution).reshape(count, num)
            if self.value is None:
                return errors.argmin(dim=1)
            # only the most consistent candidates may win on value
            keep = max(1, math.ceil(self.keep * num))
            cutoff = errors.kthvalue(keep, dim=1, keepdim=True).values
            scores = scores.masked_fill(errors > cutoff, -math.inf)
        return scores.argmax(dim=1)

    def _errors(self, plans: torch.Tensor, rows: int, execution: Execution) -> torch.Tensor:
        """``(B,)`` forward-model errors of ``plans (B, H, D)`` (raw units)."""
        assert self.consistency is not None
        if not self.simulate_tracking:
            return self.consistency(plans, rows)
        assert execution.inverse_dynamics is not None
        return self.consistency.tracking_error(
            plans, rows, execution.inverse_dynamics, *execution.bounds(), execution.gain
        )
