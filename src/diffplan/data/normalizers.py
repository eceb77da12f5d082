"""Per-dimension normalisers for transitions, serialisable to JSON with a model.

Both work on numpy arrays and torch tensors of shape ``(..., D)``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

import numpy as np
import torch

NormalizerKind = Literal["gaussian", "minmax"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_MIN_SCALE = 1e-6  # a constant dimension keeps scale 1 instead of dividing by ~0
MAX_MAGNITUDE = 1e18  # squares of larger values overflow float32 (max 3.4e38)


class Normalizer:
    """Affine map ``x -> (x - shift) / scale`` per dimension; ``shift`` and ``scale`` are ``(D,)``.

    ``gaussian``: shift = mean, scale = std (unit variance).
    ``minmax``: shift = (max + min) / 2, scale = (max - min) / 2 (maps the data to [-1, 1]).
    """

    def __init__(self, kind: NormalizerKind, shift: np.ndarray, scale: np.ndarray) -> None:
        if kind not in get_args(NormalizerKind):
            raise ValueError(
                f"unknown normaliser {kind!r}; choose one of {get_args(NormalizerKind)}"
            )
        shift = np.asarray(shift, dtype=np.float32).reshape(-1)
        scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        if shift.shape != scale.shape:
            raise ValueError(f"shift {shift.shape} and scale {scale.shape} differ in shape")
        if not (np.all(np.isfinite(shift)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("normaliser parameters must be finite with positive scale")
        if max(np.abs(shift).max(initial=0), scale.max(initial=0)) > MAX_MAGNITUDE:
            raise ValueError(f"normaliser parameters beyond {MAX_MAGNITUDE:g} overflow float32")
        self.kind: NormalizerKind = kind
        self.shift = shift
        self.scale = scale

    @classmethod
    def fit(cls, data: np.ndarray, kind: NormalizerKind = "gaussian") -> Normalizer:
        """Fit on ``data (N, D)`` (real steps only, no padding)."""
        if kind not in get_args(NormalizerKind):
            raise ValueError(
                f"unknown normaliser {kind!r}; choose one of {get_args(NormalizerKind)}"
            )
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"fit needs a non-empty (N, D) array, got shape {data.shape}")
        if not np.all(np.abs(data) <= MAX_MAGNITUDE):  # also refuses NaN
            raise ValueError(
                f"data values must be finite and within ±{MAX_MAGNITUDE:g} (their squares "
                "overflow float32 beyond that); check the dataset for corrupt rows"
            )
        if kind == "gaussian":
            shift, scale = data.mean(axis=0), data.std(axis=0)
        else:
            low, high = data.min(axis=0), data.max(axis=0)
            shift, scale = (high + low) / 2, (high - low) / 2
        scale = np.where(scale < _MIN_SCALE, 1.0, scale)
        return cls(kind, shift, scale)

    @property
    def dim(self) -> int:
        return int(self.shift.shape[0])

    def _params(self, like: ArrayT) -> tuple[ArrayT, ArrayT]:
        if like.shape[-1] != self.dim:
            raise ValueError(f"expected last dimension {self.dim}, got shape {tuple(like.shape)}")
        if isinstance(like, torch.Tensor):
            return (
                torch.as_tensor(self.shift, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.scale, dtype=like.dtype, device=like.device),
            )
        return self.shift.astype(like.dtype, copy=False), self.scale.astype(like.dtype, copy=False)

    def normalize(self, x: ArrayT) -> ArrayT:
        shift, scale = self._params(x)
        return (x - shift) / scale

    def unnormalize(self, x: ArrayT) -> ArrayT:
        shift, scale = self._params(x)
        return x * scale + shift

    def slice(self, start: int, stop: int) -> Normalizer:
        """The normaliser of dimensions ``start:stop`` (e.g. the observation part)."""
        return Normalizer(self.kind, self.shift[start:stop], self.scale[start:stop])

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters; inverse of :meth:`from_state_dict`."""
        return {"kind": self.kind, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        try:
            return cls(state["kind"], np.array(state["shift"]), np.array(state["scale"]))
        except KeyError as missing:
            raise ValueError(f"normaliser state lacks the key {missing}") from None
