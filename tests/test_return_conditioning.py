"""Return-conditioned denoisers and classifier-free guidance: the combination, its fast
backends, and a toy whose conditional and unconditional samples are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.checkpoints import load_generator
from diffplan.checkpoints import store as ckpt
from diffplan.data import TrajectoryDataset, make_episode
from diffplan.data.minari_format import write_minari_dir
from diffplan.diffusion import ClassifierFreeGuidance, ReturnGuidanceConfig
from diffplan.diffusion.backends import build_denoiser
from diffplan.models import TemporalUnet
from diffplan.training import OptimConfig, TrainConfig, UNetConfig, train
from diffplan.training.config import ReturnConditionConfig


def conditioned_unet(seed: int = 0) -> TemporalUnet:
    torch.manual_seed(seed)
    return TemporalUnet(8, 5, dim=8, dim_mults=(1, 2), returns_condition=True).eval()


def test_guidance_extrapolates_from_unconditional_to_conditional():
    net = conditioned_unet()
    x, t = torch.randn(6, 8, 5), torch.randint(0, 10, (6,))
    target = torch.full((6,), 0.7)
    conditional, unconditional = net(x, t, target), net(x, t)
    assert not torch.allclose(conditional, unconditional, atol=1e-3)  # the return matters
    # a dropped return (keep = 0) is the unconditional model
    torch.testing.assert_close(net(x, t, target, torch.zeros(6)), unconditional)
    for weight in (0.0, 1.0, 1.2, 3.0):
        guided = ClassifierFreeGuidance(net, 0.7, weight)(x, t)
        expected = unconditional + weight * (conditional - unconditional)
        torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["matrix", "onnx", "hybrid"])
def test_guided_denoiser_runs_the_same_on_fast_backends(backend):
    if backend in ("onnx", "hybrid"):
        pytest.importorskip("onnxruntime")
    guided = ClassifierFreeGuidance(conditioned_unet(), -0.3, 1.5)
    fast = build_denoiser(guided, backend, torch.device("cpu"))
    x, t = torch.randn(9, 8, 5), torch.randint(0, 10, (9,))
    for batch in (1, 3, 9):  # both of the onnx backend's graphs, other sizes than traced
        torch.testing.assert_close(fast(x[:batch], t[:batch]), guided(x[:batch], t[:batch]))


def test_unconditioned_networks_are_refused():
    plain = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2))
    with pytest.raises(ValueError, match="trained with return conditioning"):
        ClassifierFreeGuidance(plain, 0.5, 1.2)
    with pytest.raises(ValueError, match="without return conditioning"):
        plain(torch.zeros(1, 8, 5), torch.zeros(1, dtype=torch.long), torch.zeros(1))
    with pytest.raises(ValueError, match="dropout must be in"):
        ReturnConditionConfig(enabled=True, dropout=1.0).validate()


def two_behaviours(episodes: int = 40, steps: int = 24, seed: int = 0) -> TrajectoryDataset:
    """Half the episodes push right (action ~ +0.8, reward 1 per step), half push left
    (action ~ -0.8, reward 0): the return tells which behaviour a window shows."""
    rng = np.random.default_rng(seed)
    data = []
    for index in range(episodes):
        sign = 1.0 if index % 2 == 0 else -1.0
        actions = sign * 0.8 + 0.05 * rng.normal(size=(steps, 1))
        obs = np.concatenate([[[rng.normal() * 0.1]], 0.1 * np.cumsum(actions, axis=0)])
        truncations = np.zeros(steps, bool)
        truncations[-1] = True
        rewards = np.full(steps, 1.0 if sign > 0 else 0.0)
        data.append(make_episode(obs, actions, rewards, truncations=truncations, id=index))
    return TrajectoryDataset(data, source={"kind": "two behaviours"}, name="two-behaviours")


@pytest.fixture(scope="module")
def conditioned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("returns")
    data = write_minari_dir(two_behaviours(), root / "data")
    config = TrainConfig(
        dataset=str(data),
        out=root / "run",
        progress=False,
        threads=1,
        model=UNetConfig(dim=16, dim_mults=(1, 2)),
        diffusion_steps=10,
        action_weight=1.0,
        returns=ReturnConditionConfig(enabled=True, dropout=0.25),
        optim=OptimConfig(
            steps=300, batch_size=64, lr=3e-3, log_every=100, save_every=300, ema_start=250
        ),
    )
    logged = train(config)
    assert logged[-1][1] < 0.5 * logged[0][1]
    return root / "run"


def first_actions(run: Path, target: float, weight: float) -> np.ndarray:
    generator = load_generator(run, returns=ReturnGuidanceConfig(target=target, weight=weight))
    plans = generator.sample(
        np.zeros((200, 1), np.float32), generator=torch.Generator().manual_seed(0)
    )
    return plans[:, 0, 1].numpy()


def test_return_conditioning_selects_the_behaviour(conditioned_run):
    meta = ckpt.read_meta(ckpt.resolve(conditioned_run))
    assert meta.architecture["returns_condition"] and meta.targets is not None
    assert meta.targets.kind == "minmax"
    high, low = first_actions(conditioned_run, 1.0, 1.0), first_actions(conditioned_run, -1.0, 1.0)
    assert np.mean(high > 0) > 0.9 and np.mean(low < 0) > 0.9, (high.mean(), low.mean())
    # the unconditional model (trained on the dropped quarter) draws both behaviours (the share
    # of each varies with the training length: 0.23 and 0.72 seen)
    unconditional = first_actions(conditioned_run, 1.0, 0.0)
    assert 0.05 < np.mean(unconditional > 0) < 0.95, np.mean(unconditional > 0)
