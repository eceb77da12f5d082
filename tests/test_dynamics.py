"""One-step dynamics models: training on toy dynamics, inverse-dynamics actions and plan
selection by consistency in the planner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import ROTATION, toy_dynamics_dataset

from diffplan.checkpoints import store as ckpt
from diffplan.data import Normalizer
from diffplan.data.minari_format import write_minari_dir
from diffplan.diffusion import DDPMScheduler, TrajectoryGenerator
from diffplan.models import TemporalUnet
from diffplan.planning import Execution, PlanningConfig, Proposal, Selection, Smoothing
from diffplan.planning.dynamics import ActionsFromStates, ForwardConsistency
from diffplan.planning.planner import DiffusionPlanner
from diffplan.training import OptimConfig, TrainDynamicsConfig, train_dynamics
from diffplan.training.config import DynamicsNetConfig


def step(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The toy's true dynamics ``s' = R s + (0.2 a, 0)`` on ``(..., 2)``, ``(..., 1)``."""
    return states @ ROTATION.T + np.concatenate([0.2 * actions, 0 * actions], axis=-1)


@pytest.fixture(scope="module")
def dynamics_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inverse (one step, and up to two steps ahead) and forward models trained for 600 steps
    on the toy dynamics."""
    root = tmp_path_factory.mktemp("dynamics")
    data = write_minari_dir(toy_dynamics_dataset(), root / "toy")
    runs = {}
    for name, kind, reach in (
        ("inverse", "inverse", 1),
        ("forward", "forward", 1),
        ("inverse-reach2", "inverse", 2),
    ):
        config = TrainDynamicsConfig(
            dataset=str(data),
            kind=kind,
            reach=reach,
            goal_noise=0.0,  # exact recovery: the toy's push (0.2 a) is the size of the default
            out=root / name,
            progress=False,
            threads=1,
            model=DynamicsNetConfig(hidden=64 * reach**2, layers=2),  # wider for reach 2
            optim=OptimConfig(
                steps=600,
                batch_size=64,
                lr=3e-3,
                log_every=100,
                save_every=600,
                ema_start=500,  # EMA = the live weights up to step 500, then averaged
            ),
        )
        logged = train_dynamics(config)
        # two steps ahead, a_t shows only faintly (sin 0.3 of its push): a slower fit
        assert logged[-1][1] < (0.1 if reach == 1 else 0.4) * logged[0][1], (name, logged)
        runs[name] = root / name
    return runs


def fresh_transitions(count: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States, actions and next states of the toy, unseen in training."""
    rng = np.random.default_rng(7)
    angle, radius = rng.uniform(0, 2 * np.pi, count), rng.uniform(0.5, 2.0, count)
    states = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    actions = rng.uniform(-1, 1, size=(count, 1))
    return states, actions, step(states, actions)


def test_inverse_dynamics_recovers_the_actions(dynamics_runs):
    model = ActionsFromStates(dynamics_runs["inverse"])
    states, actions, next_states = fresh_transitions()
    pairs = torch.as_tensor(np.stack([states, next_states], axis=1), dtype=torch.float32)
    predicted = model(pairs)[:, 0].numpy()
    rms = np.sqrt(np.mean((predicted - actions) ** 2))
    assert rms < 0.1 * actions.std(), rms  # actions ~ U(-1, 1): std 0.58


def test_inverse_dynamics_with_reach_aims_two_steps_ahead(dynamics_runs):
    model = ActionsFromStates(dynamics_runs["inverse-reach2"])
    assert model.reach == 2 and ActionsFromStates(dynamics_runs["inverse"]).reach == 1
    states, actions, next_states = fresh_transitions()
    later = step(next_states, np.random.default_rng(8).uniform(-1, 1, size=actions.shape))
    tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731

    def rms(goal: np.ndarray, ahead: int) -> float:
        steps = torch.full((len(states),), ahead)
        predicted = model.toward(tensor(states), tensor(goal), steps).numpy()
        return float(np.sqrt(np.mean((predicted - actions) ** 2)))

    one, two = rms(next_states, 1), rms(later, 2)
    # one step ahead as well as a small net fits both; two steps ahead, a_t shows only in
    # s_t+2's second coordinate (0.2 sin 0.3 of it): recovered in part
    assert one < 0.3 * actions.std() and two < 0.75 * actions.std(), (one, two)
    assert rms(later, 1) > 2 * two  # the number of steps ahead is an input the model uses
    with pytest.raises(ValueError, match=r"trained to aim 1 to 2 steps ahead, not 1 to 3"):
        model.toward(tensor(states), tensor(later), torch.tensor([1] + [3] * 255))
    with pytest.raises(ValueError, match=r"above 1 only for --kind inverse"):
        TrainDynamicsConfig(dataset="unused", kind="forward", reach=2).validate()


def test_goal_noise_pulls_the_inverse_model_towards_the_data_actions(dynamics_runs, tmp_path):
    """Trained with noise on s_t+1 far above the action's push (0.2 a, in units of the
    states' spread ~1), the inverse model cannot read a_t from the goal and answers about
    E[a | s] = 0 (what BC would), where the noiseless model recovers a_t."""
    config = TrainDynamicsConfig(
        dataset=str(dynamics_runs["inverse"].parent / "toy"),  # the fixture's toy data
        goal_noise=3.0,
        out=tmp_path / "noisy",
        progress=False,
        threads=1,
        model=DynamicsNetConfig(hidden=64, layers=2),
        optim=OptimConfig(steps=600, batch_size=64, lr=3e-3, save_every=600, ema_start=500),
    )
    train_dynamics(config)
    states, actions, next_states = fresh_transitions()
    pairs = torch.as_tensor(np.stack([states, next_states], axis=1), dtype=torch.float32)
    clean = ActionsFromStates(dynamics_runs["inverse"])(pairs)[:, 0].numpy()
    noisy = ActionsFromStates(tmp_path / "noisy")(pairs)[:, 0].numpy()
    assert np.corrcoef(clean[:, 0], actions[:, 0])[0, 1] > 0.9
    assert noisy.std() < 0.5 * clean.std(), (noisy.std(), clean.std())
    default = TrainDynamicsConfig(dataset="unused")
    assert default.noise_on_goal("Walker2d-v5") == 0.1  # per task (tasks.json)
    assert default.noise_on_goal("HalfCheetah-v5") == 1.0
    assert default.noise_on_goal("Ant-v5") == 0.1  # a task the table lacks
    assert TrainDynamicsConfig(dataset="unused", kind="forward").noise_on_goal("Ant-v5") == 0
    with pytest.raises(ValueError, match=r"--goal-noise must be >= 0, and above 0 only for"):
        TrainDynamicsConfig(dataset="unused", kind="forward", goal_noise=0.1).validate()
    with pytest.raises(ValueError, match=r"--goal-noise must be >= 0"):
        TrainDynamicsConfig(dataset="unused", goal_noise=float("nan")).validate()


def test_the_goal_noise_in_effect_is_written_and_resumed(dynamics_runs, tmp_path):
    """Without --goal-noise the default in effect goes into config.json and the checkpoint's
    fingerprint; a run an earlier diffplan wrote with ``goal_noise: null`` still resumes."""

    def config(out: Path, steps: int, resume: bool = False) -> TrainDynamicsConfig:
        return TrainDynamicsConfig(
            dataset=str(dynamics_runs["inverse"].parent / "toy"),
            out=out,
            resume=resume,
            progress=False,
            threads=1,
            model=DynamicsNetConfig(hidden=16, layers=1),
            optim=OptimConfig(steps=steps, batch_size=8, log_every=5, save_every=5, ema_start=5),
        )

    train_dynamics(config(tmp_path / "run", 5))
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["config"]["goal_noise"] == 0.1  # the toy has no task: the table's fallback
    assert ckpt.read_meta(ckpt.checkpoints(tmp_path / "run")[-1]).fingerprint["goal_noise"] == 0.1
    # an earlier version's checkpoint: the same run, its noise recorded as null
    header = ckpt.checkpoints(tmp_path / "run")[-1] / "config.json"
    old = json.loads(header.read_text())
    old["fingerprint"]["goal_noise"] = old["config"]["goal_noise"] = None
    header.write_text(json.dumps(old))
    train_dynamics(config(tmp_path / "run", 10, resume=True))
    assert ckpt.read_meta(ckpt.checkpoints(tmp_path / "run")[-1]).fingerprint["goal_noise"] is None
    with pytest.raises(ValueError, match="goal_noise"):  # another noise is another model
        train_dynamics(replace(config(tmp_path / "run", 15, resume=True), goal_noise=0.3))


def test_forward_dynamics_error_separates_consistent_plans(dynamics_runs):
    model = ForwardConsistency(dynamics_runs["forward"])
    states, actions, next_states = fresh_transitions()
    consistent = np.concatenate(
        [np.stack([states, next_states], 1), np.stack([actions, actions], 1)], axis=2
    )
    shuffled = consistent.copy()
    shuffled[:, 1, :2] = np.roll(next_states, 1, axis=0)  # next states of other transitions
    errors = {
        name: model(torch.as_tensor(plans, dtype=torch.float32), 1)
        for name, plans in (("consistent", consistent), ("shuffled", shuffled))
    }
    assert errors["consistent"].mean() < 0.02 * errors["shuffled"].mean(), errors
    assert errors["consistent"].shape == (256,)


def toy_generator(normalizer_run: Path) -> TrajectoryGenerator:
    """A random-weight generator over the toy's windows (obs 2, act 1), H = 8."""
    torch.manual_seed(0)
    model = TemporalUnet(8, 3, dim=8, dim_mults=(1, 2)).eval()
    normalizer = ckpt.read_meta(ckpt.resolve(normalizer_run)).normalizer
    return TrajectoryGenerator(model, DDPMScheduler(5), normalizer, obs_dim=2)


@pytest.mark.parametrize("k", [1, 3])
def test_planner_executes_the_inverse_dynamics_actions(dynamics_runs, k):
    inverse = ActionsFromStates(dynamics_runs["inverse"])
    planner = DiffusionPlanner(
        toy_generator(dynamics_runs["inverse"]), effective_window=k, execution=Execution(inverse)
    )
    observations = np.array([[1.0, 0.0], [0.0, -1.5]], np.float32)
    planner.reset(2)
    executed = [planner.act(observations)]
    plans = planner.last_plans
    assert plans is not None
    executed += [planner.act(observations) for _ in range(k - 1)]
    expected = inverse(plans[:, : k + 1, :2]).numpy()
    np.testing.assert_array_equal(np.stack(executed, axis=1), expected)
    # not the planned actions: the derived ones
    assert not np.allclose(expected, plans[:, :k, 2:].numpy())


@pytest.mark.parametrize("gain", [1.0, 0.25, 0.0])
def test_tracking_derives_each_action_from_the_real_state(dynamics_runs, gain):
    inverse = ActionsFromStates(dynamics_runs["inverse"])
    planner = DiffusionPlanner(
        toy_generator(dynamics_runs["inverse"]),
        effective_window=3,
        execution=Execution(inverse, track_states=True, gain=gain),
    )
    planner.reset(2)
    # the real states drift away from the plan: every action aims at the next planned state
    reached = [np.array([[1.0, 0.0], [0.0, -1.5]], np.float32)]
    actions = [planner.act(reached[0])]
    plans = planner.last_plans
    assert plans is not None
    for step in (1, 2):
        reached.append(reached[-1] + np.float32(0.3 * step))
        actions.append(planner.act(reached[-1]))
    for i, (state, action) in enumerate(zip(reached, actions, strict=True)):
        # the next planned state, shifted by the part of the gap the gain leaves open
        gap = torch.as_tensor(state) - plans[:, i, :2]
        target = plans[:, i + 1, :2] + (1 - gain) * gap
        pair = torch.stack([torch.as_tensor(state), target], dim=1)
        np.testing.assert_allclose(action, inverse(pair)[:, 0].numpy(), rtol=1e-5, atol=1e-5)
        if i > 0 and gain < 1:  # off the plan, a gain below 1 aims elsewhere
            full = inverse(torch.stack([torch.as_tensor(state), plans[:, i + 1, :2]], dim=1))
            assert not np.allclose(action, full[:, 0].numpy(), atol=1e-3)
    assert planner.last_plans is plans  # no replan within the window
    with pytest.raises(ValueError, match="needs an inverse dynamics model"):
        Execution(track_states=True)
    with pytest.raises(ValueError, match=r"tracking gain must be in \[0, 1\], got 1\.5"):
        Execution(inverse, track_states=True, gain=1.5)
    with pytest.raises(ValueError, match=r"needs --planning\.track-states"):
        Execution(inverse, gain=0.5)
    with pytest.raises(ValueError, match=r"--planning\.tracking-gain must be in \[0, 1\]"):
        PlanningConfig(track_states=True, tracking_gain=-0.1)


def test_tracking_with_reach_aims_steps_ahead_until_the_plan_ends(dynamics_runs):
    inverse = ActionsFromStates(dynamics_runs["inverse-reach2"])
    generator = toy_generator(dynamics_runs["inverse-reach2"])
    planner = DiffusionPlanner(
        generator,
        effective_window=7,
        execution=Execution(inverse, track_states=True, gain=0.5, reach=2),
    )
    planner.reset(2)
    state = np.array([[1.0, 0.0], [0.0, -1.5]], np.float32)
    actions, reached = [planner.act(state)], [state]
    plans = planner.last_plans
    assert plans is not None
    for _ in range(6):
        reached.append(reached[-1] + np.float32(0.1))
        actions.append(planner.act(reached[-1]))
    for i, (now, action) in enumerate(zip(reached, actions, strict=True)):
        ahead = min(2, 7 - i)  # the last action of the plan aims at its last row
        now_t = torch.as_tensor(now)
        target = plans[:, i + ahead, :2] + 0.5 * (now_t - plans[:, i, :2])
        expected = inverse.toward(now_t, target, torch.full((2,), ahead))
        np.testing.assert_allclose(action, expected.numpy(), rtol=1e-5, atol=1e-5)
    # two steps ahead is another action than one step ahead
    now_t = torch.as_tensor(reached[5])
    one_ahead = plans[:, 6, :2] + 0.5 * (now_t - plans[:, 5, :2])
    one_step = inverse.toward(now_t, one_ahead, torch.ones(2, dtype=torch.long))
    assert not np.allclose(actions[5], one_step.numpy(), atol=1e-3)
    for options, message in (
        ({"reach": 3, "track_states": True}, r"tracking reach must be in 1\.\.2"),
        ({"reach": 2}, r"needs --planning\.track-states"),
    ):
        with pytest.raises(ValueError, match=message):
            Execution(inverse, **options)
    with pytest.raises(ValueError, match=r"--planning\.tracking-reach must be >= 1"):
        PlanningConfig(track_states=True, tracking_reach=0)


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_temporal_ensembling_tracks_the_mean_of_the_last_plans_predictions(dynamics_runs, gain):
    inverse = ActionsFromStates(dynamics_runs["inverse"])
    planner = DiffusionPlanner(
        toy_generator(dynamics_runs["inverse"]),
        execution=Execution(inverse, track_states=True, gain=gain),
        smoothing=Smoothing(3),
    )
    planner.reset(2)
    state = np.array([[1.0, 0.0], [0.0, -1.5]], np.float32)
    plans = []
    for step in range(5):
        action = planner.act(state)
        plans.append(planner.last_plans)
        # the plan made j steps ago predicted this step's next state in its row j + 1
        ages = range(min(step + 1, 3))
        target = torch.stack([plans[step - j][:, j + 1, :2] for j in ages]).mean(dim=0)
        # and of this step's state in row j; a gain below 1 aims off by part of the gap
        planned = torch.stack([plans[step - j][:, j, :2] for j in ages]).mean(dim=0)
        target = target + (1 - gain) * (torch.as_tensor(state) - planned)
        pair = torch.stack([torch.as_tensor(state), target], dim=1)
        np.testing.assert_allclose(action, inverse(pair)[:, 0].numpy(), rtol=1e-5, atol=1e-5)
        state = state + np.float32(0.2)
    assert not torch.allclose(plans[3][:, 1], plans[4][:, 1])  # a new plan every step
    with pytest.raises(ValueError, match=r"needs --planning\.track-states"):
        DiffusionPlanner(
            toy_generator(dynamics_runs["inverse"]),
            execution=Execution(inverse),
            smoothing=Smoothing(2),
        )


def test_candidates_are_chosen_for_consistency_then_value(dynamics_runs):
    forward = ForwardConsistency(dynamics_runs["forward"])
    generator = toy_generator(dynamics_runs["forward"])
    # candidate 0 follows the true dynamics; 1 and 2 jump; the value prefers 2, then 0
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(8, 1))
    states = [np.array([1.0, 0.5])]
    for action in actions[:-1]:
        states.append(step(states[-1], action))
    true_plan = np.concatenate([np.stack(states), actions], axis=1)
    jumpy = [true_plan.copy(), true_plan.copy()]
    jumpy[0][1:, :2] += 1.0
    jumpy[1][1:, :2] -= 0.8
    candidates = torch.as_tensor(np.stack([true_plan, *jumpy])[None], dtype=torch.float32)

    class PreferCandidate2(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.tensor([1.0, 0.0, 2.0])  # values of candidates 0, 1, 2

    def chosen(selection: Selection) -> int:
        return int(selection.best(candidates, generator.normalizer, 3, Execution())[0])

    assert chosen(Selection("consistency", consistency=forward)) == 0
    assert chosen(Selection("value", PreferCandidate2())) == 2
    assert chosen(Selection("value", PreferCandidate2(), forward, keep=0.3)) == 0
    assert chosen(Selection("value", PreferCandidate2(), forward, keep=1.0)) == 2


def toy_plan(start: list[float], actions: np.ndarray) -> np.ndarray:
    """``(len(actions), 3)`` rows ``[s | a]`` of the toy from ``start`` under ``actions``."""
    states = [np.array(start)]
    for action in actions[:-1]:
        states.append(step(states[-1], action))
    return np.concatenate([np.stack(states), actions], axis=1)


def test_simulated_tracking_judges_the_planned_states_not_the_planned_actions(dynamics_runs):
    forward = ForwardConsistency(dynamics_runs["forward"])
    inverse = ActionsFromStates(dynamics_runs["inverse"])
    true_plan = toy_plan([1.0, 0.5], np.random.default_rng(1).uniform(-0.8, 0.8, size=(8, 1)))
    wrong_actions = true_plan.copy()
    wrong_actions[:, 2] *= -1  # reachable states, but not the planned actions' states
    unreachable = true_plan.copy()
    unreachable[1:, 1] += 0.3  # no action moves the second coordinate
    plans = torch.as_tensor(np.stack([true_plan, wrong_actions, unreachable]), dtype=torch.float32)
    one_step = forward(plans, 7)
    tracked = forward.tracking_error(plans, 7, inverse)
    assert tracked.shape == (3,)
    torch.testing.assert_close(tracked[0], tracked[1])  # only the states count
    assert tracked[0] < 0.05 * tracked[2], tracked
    assert one_step[1] > 20 * one_step[0], one_step  # the one-step check blames the actions
    # clipping the inverse model's actions to bounds they need leaves the states unreached
    clipped = forward.tracking_error(plans, 7, inverse, torch.tensor([-0.1]), torch.tensor([0.1]))
    assert clipped[0] > 5 * tracked[0], (clipped, tracked)


def test_planner_chooses_the_plan_it_can_track(dynamics_runs):
    forward = ForwardConsistency(dynamics_runs["forward"])
    inverse = ActionsFromStates(dynamics_runs["inverse"])
    true_plan = toy_plan([1.0, 0.5], np.random.default_rng(2).uniform(-0.8, 0.8, size=(8, 1)))
    wrong_actions = true_plan.copy()
    wrong_actions[:, 2] *= -1
    slightly_unreachable = true_plan.copy()
    slightly_unreachable[1:, 1] += 0.05
    candidates = torch.as_tensor(
        np.stack([wrong_actions, slightly_unreachable])[None], dtype=torch.float32
    )
    generator = toy_generator(dynamics_runs["forward"])

    def chosen(simulate_tracking: bool = False, gain: float = 1.0) -> int:
        planner = DiffusionPlanner(
            generator,
            effective_window=7,
            proposal=Proposal(candidates=2),
            selection=Selection("consistency", None, forward, simulate_tracking=simulate_tracking),
            execution=Execution(inverse, track_states=True, gain=gain),
        )
        best = planner.selection.best(candidates, generator.normalizer, 7, planner.execution)
        return int(best[0])

    assert chosen() == 1  # one planned action at a time: the wrong actions look worse
    assert chosen(simulate_tracking=True) == 0
    assert chosen(simulate_tracking=True, gain=0.5) == 0
    simulated = Selection("consistency", None, forward, simulate_tracking=True)
    with pytest.raises(ValueError, match="needs a forward dynamics model"):
        DiffusionPlanner(generator, proposal=Proposal(candidates=2), selection=simulated)
    with pytest.raises(ValueError, match="needs a forward dynamics model"):
        Selection("first", simulate_tracking=True)
    with pytest.raises(ValueError, match=r"consistency rows must be in 1\.\.7"):
        DiffusionPlanner(generator, selection=Selection("consistency", None, forward, rows=8))


def test_dynamics_checkpoints_are_checked(dynamics_runs, tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="inverse dynamics model, not a forward dynamics model"):
        ForwardConsistency(dynamics_runs["inverse"])
    with pytest.raises(ValueError, match="forward dynamics model, not an inverse dynamics model"):
        ActionsFromStates(dynamics_runs["forward"])
    walker_like = TrajectoryGenerator(
        TemporalUnet(8, 5, dim=8, dim_mults=(1, 2)).eval(),
        DDPMScheduler(5),
        Normalizer.fit(np.random.default_rng(0).normal(size=(10, 5))),
        obs_dim=3,
    )
    with pytest.raises(ValueError, match="models observations of 2 and actions of 1 dims"):
        DiffusionPlanner(
            walker_like, execution=Execution(ActionsFromStates(dynamics_runs["inverse"]))
        )
    with pytest.raises(ValueError, match="models observations of 2 and actions of 1 dims"):
        forward = ForwardConsistency(dynamics_runs["forward"])
        DiffusionPlanner(walker_like, selection=Selection("consistency", consistency=forward))
    with pytest.raises(ValueError, match=r"consistency keep must be in \(0, 1\]"):
        Selection(keep=0.0)
