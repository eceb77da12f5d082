"""Ways to run a trained denoiser at planning time, chosen for speed (``benchmarks/plan_speed.py``).

On a CPU a small temporal U-Net spends most of a forward pass on per-operator
overhead, not arithmetic. A backend runs the same weights through a leaner graph:

- ``"auto"``: ``"onnx"`` on a CPU where onnxruntime is installed, else ``"eager"``.
- ``"eager"``: plain PyTorch (any device; the fallback).
- ``"torchscript"``: the channels-last matrix-product copy of the U-Net
  (:class:`~diffplan.models.channels_last.ChannelsLastUnet`; the U-Net itself where it
  has attention), traced and frozen.
- ``"onnx"`` (CPU): ONNX Runtime runs the convolutional graph for batches of up to
  ``SMALL_BATCH`` windows and the channels-last graph for larger ones (the crossover
  measured by ``benchmarks/plan_speed.py``; the convolutional one only with attention).
  Needs the ``onnxruntime`` and ``onnx`` packages.

A backend is a snapshot: it holds the weights as they were when it was built, so
rebuild it after the weights change (e.g. during fine-tuning).
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Literal, get_args

import torch
from torch import nn

from diffplan.diffusion.guidance import ClassifierFreeGuidance
from diffplan.models.channels_last import ChannelsLastUnet, has_attention
from diffplan.models.unet import TemporalUnet

Backend = Literal["auto", "eager", "torchscript", "onnx"]
SMALL_BATCH = 4
"""Largest batch the onnx backend runs through the convolutional graph."""


def _onnx_session(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """An ONNX Runtime session of ``model`` with a dynamic batch size, on torch's threads."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "the onnx backend needs onnxruntime: pip install onnxruntime onnx "
            "(or choose --planning.backend eager)"
        ) from error
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks
        torch.onnx.export(
            model,
            example,
            buffer,
            input_names=["x", "t"],
            output_names=["output"],
            dynamic_axes={"x": {0: "batch"}, "t": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        buffer.getvalue(), options, providers=["CPUExecutionProvider"]
    )


def _channels_last(model: nn.Module) -> nn.Module | None:
    """The channels-last copy of a U-Net without attention (also inside classifier-free
    guidance); ``None`` for other networks."""
    if isinstance(model, ClassifierFreeGuidance):
        inner = _channels_last(model.network)
        return None if inner is None else model.with_network(inner)
    if isinstance(model, TemporalUnet) and not has_attention(model):
        return ChannelsLastUnet.from_unet(model)
    return None


class OnnxNetwork(nn.Module):
    """A network ``(x (B, H, D), t (B,)) -> output (B, ...)`` run by ONNX Runtime on the CPU."""

    def __init__(self, model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.small = _onnx_session(model, example)
        fast = _channels_last(model)
        self.large = self.small if fast is None else _onnx_session(fast, example)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        session = self.small if len(x) <= SMALL_BATCH else self.large
        inputs = {"x": x.detach().contiguous().numpy(), "t": t.detach().numpy()}
        return torch.from_numpy(session.run(None, inputs)[0])


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: Backend, device: torch.device) -> Backend:
    """The backend that ``backend`` means on ``device`` (``"auto"`` resolved)."""
    if backend not in get_args(Backend):
        raise ValueError(f"unknown backend {backend!r}; choose one of {get_args(Backend)}")
    if backend == "auto":
        return "onnx" if device.type == "cpu" and _has_onnxruntime() else "eager"
    return backend


def build_denoiser(model: nn.Module, backend: Backend, device: torch.device) -> nn.Module:
    """``model`` (eval mode, on ``device``) as the ``backend`` runs it; same call signature.

    ``model`` takes windows ``x (B, H, D)`` and steps ``t (B,)`` and has ``horizon`` and
    ``transition_dim`` attributes: a :class:`TemporalUnet` (possibly inside
    :class:`ClassifierFreeGuidance`) or a value network. Only attention-free U-Nets get
    the channels-last graph.
    """
    model.eval()
    backend = resolve_backend(backend, device)
    if backend == "eager":
        return model
    if backend == "onnx" and device.type != "cpu":
        raise ValueError(
            f"the onnx backend runs on the CPU, not {device}; use eager or torchscript"
        )
    horizon, dim = model.horizon, model.transition_dim
    example = (
        torch.zeros(2, horizon, dim, device=device),
        torch.zeros(2, dtype=torch.long, device=device),
    )
    if backend == "onnx":
        return OnnxNetwork(model, example)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks
        traced = torch.jit.trace(_channels_last(model) or model, example, check_trace=False)
        return torch.jit.freeze(traced)
