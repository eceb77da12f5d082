"""Offline RL baselines from d3rlpy (IQL, TD3+BC) on a diffplan dataset.

Optional: ``pip install 'diffplan[baselines]'`` (d3rlpy). The hyperparameters are
those of d3rlpy's D4RL locomotion reproduction scripts
(``reproductions/offline/iql.py`` and ``td3_plus_bc.py`` in takuseno/d3rlpy,
500,000 steps): IQL with actor and critic learning rates 3e-4, batch 256,
expectile 0.7, weight temperature 3.0, max weight 100, returns scaled by
``ReturnBasedRewardScaler(multiplier=1000)`` and a cosine-annealed actor learning
rate over the training steps; TD3+BC with learning rates 3e-4, batch 256, target
smoothing sigma 0.2 / clip 0.5, alpha 2.5, actor update every 2 steps and
standardised observations.

Saving without pickles: d3rlpy's own ``save``/``save_model`` write ``torch.save``
pickles, so they are not used. A trained algorithm is a folder holding
``d3rlpy.json`` (d3rlpy's own JSON serialisation of the algorithm's config,
including the fitted observation and reward scalers, plus the shapes) and
``d3rlpy.safetensors`` (every network's weights, keyed ``module.parameter``);
:func:`load` rebuilds the algorithm from those two files.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from diffplan.atomic import atomic_path, write_json
from diffplan.data.episodes import TrajectoryDataset
from diffplan.runtime import DeviceChoice, resolve_device

REPRODUCTION_STEPS = 500_000
INSTALL = "pip install 'diffplan[baselines]' (or pip install d3rlpy)"
CONFIG, WEIGHTS = "d3rlpy.json", "d3rlpy.safetensors"


def require_d3rlpy() -> None:
    """Raise ``ValueError`` with the install command when d3rlpy is not installed."""
    if importlib.util.find_spec("d3rlpy") is None:
        raise ValueError(f"--algo iql and td3bc need d3rlpy, which is not installed: {INSTALL}")


def algo_config(algo: str, steps: int) -> Any:
    """d3rlpy's config of ``algo`` (``iql`` or ``td3bc``) with the reproduction hyperparameters."""
    import d3rlpy

    if algo == "iql":
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)
            ),
            batch_size=256,
            weight_temp=3.0,
            max_weight=100.0,
            expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
        )
    if algo == "td3bc":
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            batch_size=256,
            target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5,
            alpha=2.5,
            update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        )
    raise ValueError(f"unknown d3rlpy algorithm {algo!r}; choose iql or td3bc")


def mdp_dataset(dataset: TrajectoryDataset) -> Any:
    """``dataset`` as a d3rlpy ``MDPDataset``, terminations and time-limit cuts kept apart.

    A terminated episode's ``T`` steps end with ``terminals = 1`` (d3rlpy gives its
    last transition no next state). A truncated episode gets its final observation
    as one more row (zero action and reward) marked ``timeouts = 1``: d3rlpy uses a
    timed-out episode's last row only as the next state of the one before, so all
    ``T`` transitions keep their real next state and nothing bootstraps from a zero.
    """
    import d3rlpy

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "term", "time")}
    for episode in dataset:
        steps, cut = len(episode), int(not episode.terminated)
        rows = steps + cut
        parts["obs"].append(episode.observations[:rows])
        parts["act"].append(np.concatenate([episode.actions, np.zeros((cut, dataset.act_dim))]))
        parts["rew"].append(np.concatenate([episode.rewards, np.zeros(cut)]))
        terminals, timeouts = np.zeros(rows), np.zeros(rows)
        terminals[-1], timeouts[-1] = episode.terminated, cut
        parts["term"].append(terminals)
        parts["time"].append(timeouts)
    joined = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    return d3rlpy.dataset.MDPDataset(
        observations=joined["obs"],
        actions=joined["act"],
        rewards=joined["rew"],
        terminals=joined["term"],
        timeouts=joined["time"],
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
        action_size=dataset.act_dim,
    )


class D3rlpyPolicy:
    """A trained d3rlpy algorithm as a :class:`~diffplan.evaluation.closed_loop.Controller`."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo

    def reset(self, num_envs: int) -> None:
        """Nothing to reset: the policy is memoryless."""

    def act(self, observations: np.ndarray, env_ids: np.ndarray | None = None) -> np.ndarray:
        """``(N, obs_dim)`` observations -> ``(N, act_dim)`` greedy actions."""
        return self.algo.predict(np.asarray(observations, dtype=np.float32))


def train(
    algo: str,
    dataset: TrajectoryDataset,
    *,
    steps: int,
    seed: int,
    device: DeviceChoice,
    folder: Path,
    progress: bool = False,
) -> D3rlpyPolicy:
    """Train ``algo`` on ``dataset`` for ``steps`` steps (seeded), save it in ``folder``."""
    require_d3rlpy()
    import d3rlpy

    d3rlpy.seed(seed)
    learner = algo_config(algo, steps).create(device=_device(device))
    learner.fit(
        mdp_dataset(dataset),
        n_steps=steps,
        n_steps_per_epoch=min(steps, 1000),
        show_progress=progress,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    weights = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, module in learner.impl.modules.get_torch_modules().items()
        for key, value in module.state_dict().items()
    }
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(weights, str(tmp))
    write_json(
        folder / CONFIG,
        {
            "algo": algo,
            "config": json.loads(learner.config.serialize()),
            "observation_shape": [dataset.obs_dim],
            "action_size": dataset.act_dim,
        },
    )
    return D3rlpyPolicy(learner)


def load(folder: Path, device: DeviceChoice = "cpu") -> D3rlpyPolicy:
    """The algorithm :func:`train` saved in ``folder`` (its JSON and safetensors only)."""
    require_d3rlpy()
    for path in (folder / CONFIG, folder / WEIGHTS):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: train it with `diffplan baseline`")
    saved = json.loads((folder / CONFIG).read_text())
    config_class = type(algo_config(saved["algo"], 1))
    learner = config_class.deserialize(json.dumps(saved["config"])).create(device=_device(device))
    learner.create_impl(tuple(saved["observation_shape"]), saved["action_size"])
    weights = load_file(str(folder / WEIGHTS))
    for name, module in learner.impl.modules.get_torch_modules().items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        module.load_state_dict(state)
    return D3rlpyPolicy(learner)


def _device(choice: DeviceChoice) -> str:
    device = resolve_device(choice)
    return f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu:0"
