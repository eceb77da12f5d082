"""Fixed-horizon windows of transitions: what the diffusion model is trained on.

Transition layout (one row of a window, used everywhere in diffplan)::

    row t = [ observation_t (obs_dim) | action_t (act_dim) ]      D = obs_dim + act_dim

so a window of horizon ``H`` starting at step ``t`` is the ``(H, D)`` array of
rows ``t .. t+H-1`` of one episode, the action in each row being the one taken
*in* that row's observation. A window never crosses two episodes. A window
starts at every real step; rows past the episode's last step are padding,
marked ``False`` in the window's validity mask:

* ``padding="edge"`` (default): padding repeats the last real row;
* ``padding="zero"``: padding rows are zero *after* normalisation;
* ``padding="none"``: no padding; only windows that fit inside an episode.

With ``drop_terminated`` the episodes that terminated (fell) give no windows; the
normaliser is fitted on every episode all the same.

Each window has a value target: the discounted return-to-go from its first
step to the end of its episode, with ``termination_penalty`` added to the last
reward of episodes that terminated (fell), not of truncated ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from diffplan.data.episodes import TrajectoryDataset, discounted_returns_to_go
from diffplan.data.normalizers import Normalizer, NormalizerKind

PaddingMode = Literal["edge", "zero", "none"]


@dataclass(frozen=True)
class WindowBatch:
    """A batch of windows: ``window (B, H, D)`` normalised, ``mask (B, H)`` True on real
    steps, ``value (B,)`` discounted return-to-go from each window's first step."""

    window: torch.Tensor
    mask: torch.Tensor
    value: torch.Tensor

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(self.window.to(device), self.mask.to(device), self.value.to(device))


def transitions(dataset: TrajectoryDataset) -> np.ndarray:
    """``(num_steps, D)`` float32 rows ``[obs_t | act_t]`` of all episodes, concatenated."""
    return np.concatenate(
        [np.concatenate([e.observations[:-1], e.actions], axis=1) for e in dataset], axis=0
    )


class WindowDataset(Dataset):
    """Normalised ``(H, D)`` windows of a :class:`TrajectoryDataset`.

    Args:
        dataset: the episodes.
        horizon: window length ``H``.
        normalizer: a fitted :class:`Normalizer` (e.g. from a checkpoint), or the kind of
            normaliser to fit on this dataset's real steps (``"gaussian"`` or ``"minmax"``).
        padding: how windows that run past an episode's end are filled (module docstring).
        discount: discount of the value target (the original Diffuser: 0.997).
        termination_penalty: added to the last reward of terminated episodes (original: -100).
        drop_terminated: make windows only of the episodes that did not terminate.
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        horizon: int,
        *,
        normalizer: Normalizer | NormalizerKind = "gaussian",
        padding: PaddingMode = "edge",
        discount: float = 0.997,
        termination_penalty: float = -100.0,
        drop_terminated: bool = False,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if padding not in get_args(PaddingMode):
            raise ValueError(f"unknown padding {padding!r}; choose one of {get_args(PaddingMode)}")
        self.horizon = horizon
        self.padding: PaddingMode = padding
        self.obs_dim, self.act_dim = dataset.obs_dim, dataset.act_dim
        self.info = dataset.info

        real_rows = transitions(dataset)
        if isinstance(normalizer, str):
            try:
                normalizer = Normalizer.fit(real_rows, normalizer)
            except ValueError as error:
                raise ValueError(f"{dataset.name}: {error}") from None
        if normalizer.dim != self.transition_dim:
            raise ValueError(
                f"normaliser has {normalizer.dim} dims but the data has {self.transition_dim} "
                f"(obs {self.obs_dim} + act {self.act_dim}); it belongs to another dataset/model"
            )
        self.normalizer = normalizer

        pad = 0 if padding == "none" else horizon - 1
        rows, valid, starts, values = [], [], [], []
        offset, cursor = 0, 0
        for episode in dataset:
            steps = len(episode)
            first, cursor = cursor, cursor + steps
            if drop_terminated and episode.terminated:
                continue
            episode_rows = normalizer.normalize(real_rows[first:cursor])
            fill = episode_rows[-1:] if padding == "edge" else np.zeros_like(episode_rows[-1:])
            rows += [episode_rows, np.repeat(fill, pad, axis=0)]
            valid += [np.ones(steps, bool), np.zeros(pad, bool)]
            num_starts = steps if padding != "none" else max(steps - horizon + 1, 0)
            starts.append(offset + np.arange(num_starts))
            penalty = termination_penalty if episode.terminated else 0.0
            values.append(discounted_returns_to_go(episode.rewards, discount, penalty)[:num_starts])
            offset += steps + pad
        if sum(map(len, starts)) == 0:
            raise ValueError(
                f"{dataset.name}: no windows left: every episode terminated (drop_terminated) "
                f"or, with padding='none', none is at least {horizon} steps long; keep the "
                "terminated episodes, use a shorter horizon or padding"
            )
        self._rows = torch.from_numpy(np.concatenate(rows).astype(np.float32))
        self._valid = torch.from_numpy(np.concatenate(valid))
        self._starts = torch.from_numpy(np.concatenate(starts).astype(np.int64))
        self._values = torch.from_numpy(np.concatenate(values).astype(np.float32))
        self._offsets = torch.arange(horizon)

    @property
    def transition_dim(self) -> int:
        """``D = obs_dim + act_dim``."""
        return self.obs_dim + self.act_dim

    def __len__(self) -> int:
        return int(self._starts.shape[0])

    @property
    def values(self) -> torch.Tensor:
        """``(num_windows,)`` value targets of all windows, in index order."""
        return self._values

    def get_batch(self, indices: torch.Tensor | np.ndarray | list[int]) -> WindowBatch:
        """Windows ``indices`` as one :class:`WindowBatch` (vectorised gather)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        rows = self._starts[indices][:, None] + self._offsets
        return WindowBatch(self._rows[rows], self._valid[rows], self._values[indices])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> WindowBatch:
        """``batch_size`` windows drawn uniformly with replacement."""
        return self.get_batch(torch.randint(len(self), (batch_size,), generator=generator))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One window: ``window (H, D)``, ``mask (H,)``, ``value ()``."""
        batch = self.get_batch([index])
        return {"window": batch.window[0], "mask": batch.mask[0], "value": batch.value[0]}
