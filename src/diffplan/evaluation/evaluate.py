"""``diffplan evaluate``: the report's experiment on a trained model.

Sweeps effective windows ``k`` (default ``1 .. H-1``) with the same episode
seeds for every setting, adds a value-guided run at the longest window when a
value network is given, and writes a run folder: ``results.json`` (every result,
the dataset, versions, checkpoint step and resolved config; docs/RESULTS_SCHEMA.md),
``metrics.csv``, ``metrics.json``, ``episodes.csv``, ``report.md``, ``scores.png`` and
``.pdf`` (the report's Figure 1), ``episodes.png`` and ``.pdf`` (Figure 2), ``config.json``
(resolved options, git revision) and, with ``--video``, ``rollout.gif`` (one episode of
the first setting).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import torch

from diffplan.atomic import write_json
from diffplan.checkpoints import store as ckpt
from diffplan.checkpoints.loading import load_diffusion, load_network
from diffplan.data.episodes import DatasetInfo
from diffplan.diffusion.guidance import ClassifierFreeGuidance
from diffplan.evaluation.closed_loop import run_episodes
from diffplan.evaluation.metrics import summarize
from diffplan.evaluation.report import SettingResult, write_report
from diffplan.evaluation.video import record_episode
from diffplan.outputs import output_folder
from diffplan.planning.config import PlanningConfig
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.planner import DiffusionPlanner
from diffplan.planning.presets import presets, within_task
from diffplan.runtime import DeviceChoice, git_revision, resolve_device


@dataclass
class EvaluateConfig:
    """Evaluate receding-horizon planning: sweep effective windows, plus a value-guided run."""

    diffusion: Path
    """Diffusion model: a `diffplan train` run directory or one of its checkpoints."""
    out: Path = Path("runs/evaluate")
    """Run folder for the metrics, report and figures."""
    value: Path | None = None
    """Value network (`diffplan train-value` run); enables the guided run and candidate choice."""
    dynamics: Path | None = None
    """Forward dynamics model (`diffplan train-dynamics --kind forward` run): sample several
    plans per decision and prefer those whose states follow from their actions."""
    inverse_dynamics: Path | None = None
    """Inverse dynamics model (`diffplan train-dynamics --kind inverse` run): execute the
    actions linking consecutive planned states instead of the planned actions."""
    windows: tuple[int, ...] = ()
    """Effective windows k to sweep (actions run per plan); default 1 .. H-1, or none
    when --guided-windows is given."""
    guided_windows: tuple[int, ...] = ()
    """Effective windows of the value-guided runs; default H-1 (needs --value)."""
    episodes: int = 10
    """Episodes per setting; episode i is reset with seed + i in every setting."""
    seed: int = 0
    """First episode seed; also seeds the sampler."""
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    """Sampler, backend, warm start, candidates and guidance of the planner."""
    preset: str = "custom"
    """The planner's name in results.json and the report: --planner NAME sets it to NAME."""
    weights: Literal["ema", "model"] = "ema"
    """Which weights of the diffusion checkpoint to plan with."""
    device: DeviceChoice = "auto"
    """'auto' uses a GPU when there is one."""
    threads: int | None = None
    """CPU threads of torch (None: torch's default). Use 1 on a busy machine."""
    progress: bool = True
    """Show progress bars."""
    video: bool = False
    """Also record one episode (first seed, first setting) as rollout.gif (needs offscreen GL)."""
    overwrite: bool = False
    """Replace an existing evaluation in --out (its old files are deleted first)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming an option out of range (before any work)."""
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1 (or left out), got {self.threads}")
        unguided = bool(self.windows) or not self.guided_windows
        guided = bool(self.guided_windows) or self.value is not None
        for kind in (False, True) if unguided and guided else (guided,):
            self.planning.selection_for(kind, self.dynamics is not None)
        chosen = (*self.windows, *self.guided_windows)
        ensemble = self.planning.temporal_ensemble
        if ensemble > 1 and chosen and 1 not in chosen and ensemble != self._presets_ensemble():
            raise ValueError(
                f"--planning.temporal-ensemble {ensemble} applies at k = 1 only, and the "
                f"windows evaluated are {sorted(set(chosen))}: add 1 to --windows or "
                "--guided-windows, or leave the ensemble out"
            )

    def _presets_ensemble(self) -> int:
        """The temporal ensemble of the preset named by --preset (1 for a label that names
        none): a preset's own ensemble applies where it can (k = 1), by design."""
        preset = presets().get(self.preset)
        return preset.config().temporal_ensemble if preset is not None else 1


def _preset_ensemble_within(config: EvaluateConfig, horizon: int, env_id: str) -> EvaluateConfig:
    """``config`` with its preset's temporal ensemble cut to what ``horizon`` and the task
    allow (:func:`~diffplan.planning.presets.within_task`); an ensemble given by hand is
    left as it is (and refused when too long)."""
    ensemble = config.planning.temporal_ensemble
    if ensemble == 1 or ensemble != config._presets_ensemble():
        return config
    planning = within_task(config.planning, horizon, env_id)
    if planning.temporal_ensemble != ensemble:
        print(f"note      preset {config.preset}: temporal ensemble of "
              f"{planning.temporal_ensemble} plans, not {ensemble}, at horizon {horizon} on "
              f"{env_id} (diffplan/tasks.json)")  # fmt: skip
    return replace(config, planning=planning)


def evaluate(config: EvaluateConfig) -> list[SettingResult]:
    """Run ``diffplan evaluate`` (module docstring); returns the results per setting."""
    config.validate()
    existing = "replace" if config.overwrite else "refuse"
    with output_folder(config.out, "evaluate", existing=existing):
        return _evaluate(config)


def _evaluate(config: EvaluateConfig) -> list[SettingResult]:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    generator, diffusion = load_diffusion(
        config.diffusion,
        device=device,
        weights=config.weights,
        backend=config.planning.backend,
        returns=config.planning.experimental.returns,
    )
    meta = diffusion.meta
    generator.timesteps(config.planning.sampler)  # refuses more steps than the model has
    data = DatasetInfo(**meta.dataset)
    env_id = data.env_id
    if env_id is None:
        raise ValueError(f"{config.diffusion}: its dataset names no environment to evaluate in")
    horizon = generator.horizon
    config = _preset_ensemble_within(config, horizon, env_id)
    windows = config.windows or (() if config.guided_windows else tuple(range(1, horizon)))
    guided_windows = config.guided_windows or ((horizon - 1,) if config.value else ())
    if guided_windows and config.value is None:
        raise ValueError("--guided-windows needs --value (a trained value network)")
    value_net = None
    if config.value is not None:
        value = load_network(config.value, "value", device=device)
        value_net, value_meta = value.network, value.meta
        if value_meta.normalizer.state_dict() != meta.normalizer.state_dict() or (
            value_meta.architecture["horizon"] != horizon
        ):
            raise ValueError(
                f"{config.value} was trained on other windows (horizon or normaliser) than "
                f"{config.diffusion}; train the value network on the same dataset and horizon"
            )
    consistency = ForwardConsistency(config.dynamics, device=device) if config.dynamics else None
    inverse_dynamics = (
        ActionsFromStates(config.inverse_dynamics, device=device)
        if config.inverse_dynamics
        else None
    )
    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    seeds = [config.seed + i for i in range(config.episodes)]
    settings = [(f"k={k}", k, False) for k in windows]
    settings += [(f"k={k} guided", k, True) for k in guided_windows]
    config.out.mkdir(parents=True, exist_ok=True)
    write_json(
        config.out / "config.json",
        {
            "config": config_record(config),
            "git_revision": git_revision(),
            "device": str(device),
            "env_id": env_id,
            "horizon": horizon,
            "checkpoint": str(diffusion.path),
            "checkpoint_step": diffusion.step,
            "dataset": data.to_dict(),
        },
    )

    def planner_for(k: int, guided: bool) -> DiffusionPlanner:
        return config.planning.make_planner(
            generator,
            k,
            value_net=value_net if guided else None,
            consistency=consistency,
            inverse_dynamics=inverse_dynamics,
            action_low=low,
            action_high=high,
            seed=config.seed,
        )

    conditioned = isinstance(generator.model, ClassifierFreeGuidance)
    header = _header(config, horizon, bool(guided_windows), generator.backend, conditioned)
    results: list[SettingResult] = []
    for label, k, guided in settings:
        planner = planner_for(k, guided)
        began = time.perf_counter()
        episodes = run_episodes(planner, env_id, seeds, progress=config.progress, description=label)
        seconds = time.perf_counter() - began
        metrics = summarize(episodes, data)
        results.append(
            SettingResult(
                label,
                k,
                guided,
                episodes,
                metrics,
                seconds,
                preset=config.preset,
                temporal_ensemble=config.planning.ensemble_at(k),
            )
        )
        print(
            f"{label:<12} return {metrics.mean_return:8.1f} ± {metrics.std_return:6.1f}  "
            f"{metrics.percent_of_data:5.1f} % of data  falls {metrics.falls}/{metrics.episodes}"
            f"  ({seconds:.0f} s, {planner.plans_made} plans)"
        )
        write_report(
            results,
            data,
            config.out,
            header,
            model=f"{config.diffusion} (H = {horizon})",
            config=config_record(config),
            checkpoint_step=diffusion.step,
        )
    if config.video:
        label, k, guided = settings[0]
        path = record_episode(
            planner_for(k, guided), env_id, config.seed, config.out / "rollout.gif"
        )
        if path is not None:
            print(f"written   {path} ({label}, seed {config.seed})")
    print(f"written   {config.out}/report.md")
    return results


def config_record(config: EvaluateConfig) -> dict[str, Any]:
    """``config`` as ``config.json`` records it (paths as strings, as JSON reads it back)."""
    return ckpt.jsonable(asdict(config))


def _header(
    config: EvaluateConfig, horizon: int, guided: bool, backend: str, conditioned: bool
) -> str:
    last = config.seed + config.episodes - 1
    planning = config.planning
    sampler, warm = planning.sampler, planning.experimental.warm_start
    text = (
        f"# Planning with {config.diffusion} (H = {horizon})\n\n"
        f"{config.episodes} episodes per setting, seeds {config.seed} to {last}. "
        f"Sampler {sampler.method}, {sampler.steps or 'all'} steps, {backend} backend"
    )
    if warm.step is not None:
        text += f", warm start from step {warm.step} ({warm.steps or 'sampler'} steps)"
    text += "."
    if conditioned:
        returns = planning.experimental.returns
        text += (
            f" Return-conditioned model: classifier-free guidance toward return {returns.target}"
            f" (dataset scale -1..1), weight {returns.weight}."
        )
    if config.dynamics is not None:
        check = planning.consistency
        _, count = planning.selection_for(False, True)
        text += (
            f" Candidates chosen for consistency with the forward model {config.dynamics} "
            f"({count} per unguided decision; guided: the value "
            f"network's best of the {check.keep:.0%} most consistent), "
            + (
                "following each plan's states in it closed loop"
                if check.simulate_tracking
                else "one planned action at a time"
            )
            + f" over {check.rows or 'the k'} transitions."
        )
    elif planning.selection == "mean":
        text += f" Unguided runs execute the mean of {planning.candidates} plans per decision."
    if planning.temporal_ensemble > 1:
        decay = planning.experimental.ensemble_decay
        text += (
            f" At k = 1 each step's target is the mean of the last {planning.temporal_ensemble}"
            " plans' predictions for it"
            + (f", the plan made j steps ago weighted exp(-{decay} j)" if decay else "")
            + "; settings at k > 1 replan without it."
        )
    if config.inverse_dynamics is not None:
        text += f" Executed actions from the inverse dynamics model {config.inverse_dynamics}"
        text += (
            ", each from the real state and the next planned state."
            if planning.track_states
            else ", derived from the planned states."
        )
        if planning.tracking_gain < 1:
            text += f" Tracking gain {planning.tracking_gain}."
        if planning.tracking_reach > 1:
            text += f" Each action aims {planning.tracking_reach} planned steps ahead."
    if guided:
        guide = planning.guide
        text += (
            f" Guided runs: {planning.selection_for(True, config.dynamics is not None)[1]} "
            f"candidates, scale {guide.scale}, "
            f"{guide.n_guide_steps} guide steps, {guide.gradient_scaling} scaling, "
            f"t_stopgrad {guide.t_stopgrad}."
        )
    return text
