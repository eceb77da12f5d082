"""Ways to run a trained denoiser at planning time, chosen for speed (``benchmarks/plan_speed.py``).

On a CPU a small temporal U-Net spends most of a forward pass on per-operator
overhead, not arithmetic. A backend runs the same weights through a leaner graph:

- ``"auto"``: ``"hybrid"`` on a CPU (``"matrix"`` without onnxruntime), ``"eager"``
  on a GPU.
- ``"eager"``: plain PyTorch (any device; the fallback).
- ``"matrix"``: a matrix-product copy of the U-Net (below; the U-Net itself where
  it has attention), run by eager PyTorch under ``inference_mode``.
- ``"onnx"`` (CPU): ONNX Runtime running the same copy, exported by ``torch.export``
  (``torch.onnx.export(dynamo=True)``, a few seconds), its GroupNorms fused into one
  node each by an ``onnxscript`` rewrite (ONNX Runtime's time at one window grows with
  the node count, not the arithmetic: :func:`onnx_graph`). Needs the ``onnxruntime``,
  ``onnx`` and ``onnxscript`` packages.
- ``"hybrid"`` (CPU): the fastest of those per batch size, ONNX Runtime up to
  ``SMALL_BATCH`` windows and eager PyTorch above.

``benchmarks/backend_graphs.py`` times every graph per horizon and batch: ONNX Runtime
is the fastest for a few windows (at H = 8 its flat copy beats its convolutional graph,
0.50 against 0.67 ms for one window; at H = 32 the two tie) and eager PyTorch from ten
windows up. docs/PERFORMANCE.md compares these with TorchScript (deprecated; 10-40 %
faster than the eager copy from ten windows up), ``torch.compile`` and AOTInductor (as
fast or faster, after a 20-60 s compile per network). The copies compute the same
function as the U-Net: the flat one (:class:`~diffplan.models.flat.FlatUnet`, every
layer one dense product of the whole window) up to ``FLAT_MAX_HORIZON`` steps, the
channels-last one (:class:`~diffplan.models.channels_last.ChannelsLastUnet`, a product
over gathered taps) above, where the flat operators' ``H^2`` size outgrows the
convolutions.

Value guidance needs the value network's gradient, so it runs in eager PyTorch; with a
fast backend on a CPU it differentiates the flat copy of the value network
(:func:`gradient_network`), whose backward pass is a few dense products.

A backend is a snapshot: it holds the weights as they were when it was built, so
rebuild it after the weights change (e.g. during fine-tuning).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal, get_args

import torch
from torch import nn

from diffplan.diffusion.guidance import ClassifierFreeGuidance
from diffplan.models.channels_last import ChannelsLastUnet
from diffplan.models.flat import FlatUnet, FlatValueNetwork
from diffplan.models.unet import TemporalUnet, has_attention
from diffplan.models.value import ValueNetwork

Backend = Literal["auto", "eager", "matrix", "onnx", "hybrid"]
SMALL_BATCH = 4
"""Largest batch the hybrid backend runs through ONNX Runtime (eager PyTorch above)."""
FLAT_MAX_HORIZON = 8
"""Longest horizon whose U-Net runs as the flat copy (the fastest copy at H = 8 from ten
windows up, slower than the channels-last one at H = 16 and 32)."""


def _scaled_layer_norm_rule() -> Any:
    """An ``onnxscript`` rewrite rule: ``LayerNormalization(x, ones) * scale + shift`` with
    constant ``scale`` and ``shift`` -> ``LayerNormalization(x, scale, shift)``, one node
    instead of three (ONNX Runtime broadcasts a scale and shift of ``x``'s trailing shape,
    such as the flat copy's ``(G, C L / G)`` GroupNorm parameters)."""
    from onnxscript.rewriter import pattern

    class ScaledLayerNorm(pattern.RewriteRuleClassBase):
        def pattern(self, op, x, ones, scale, shift):  # type: ignore[no-untyped-def]
            normed = op.LayerNormalization(x, ones, _allow_other_attributes=True, _outputs=["n"])
            return normed * scale + shift

        def check(self, context, ones, scale, shift, **_):  # type: ignore[no-untyped-def]
            result = pattern.MatchResult()
            if any(v.const_value is None for v in (ones, scale, shift)):
                return result.fail("scale, shift and the norm's own scale must be constants")
            if not (ones.const_value.numpy() == 1).all():
                return result.fail("the norm has a scale of its own")
            return result

        def rewrite(self, op, x, scale, shift, n, **_):  # type: ignore[no-untyped-def]
            return op.LayerNormalization(x, scale, shift, **n.producer().attributes)

    return ScaledLayerNorm.rule()


def onnx_graph(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """The ``onnx.ModelProto`` the ONNX backends run: ``model`` exported by
    ``torch.export`` with a dynamic batch size, its scaled layer norms fused
    (:func:`_scaled_layer_norm_rule`). Needs ``onnxscript``."""
    from onnxscript import rewriter

    with torch.no_grad():
        program = torch.onnx.export(
            model,
            example,
            input_names=["x", "t"],
            output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC}, {0: torch.export.Dim.DYNAMIC}),
            dynamo=True,
            verbose=False,
        )
    return rewriter.rewrite(program.model_proto, [_scaled_layer_norm_rule()])


def _onnx_session(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """An ONNX Runtime session of :func:`onnx_graph` on torch's threads."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's exporter)
    except ImportError as error:
        raise ImportError(
            "the onnx and hybrid backends need onnxruntime, onnx and onnxscript: "
            "pip install onnxruntime onnx onnxscript (or choose --planning.backend matrix)"
        ) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        onnx_graph(model, example).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def matrix_copy(model: nn.Module) -> nn.Module | None:
    """The matrix-product copy of a U-Net without attention (also inside classifier-free
    guidance): flat up to ``FLAT_MAX_HORIZON`` steps, channels-last above; the flat copy of
    a value network up to ``FLAT_MAX_HORIZON`` steps; ``None`` for other networks."""
    if isinstance(model, ValueNetwork):
        return FlatValueNetwork.from_value(model) if model.horizon <= FLAT_MAX_HORIZON else None
    if isinstance(model, ClassifierFreeGuidance):
        inner = matrix_copy(model.network)
        return None if inner is None else model.with_network(inner)
    if isinstance(model, TemporalUnet) and not has_attention(model):
        if model.horizon <= FLAT_MAX_HORIZON:
            return FlatUnet.from_unet(model)
        return ChannelsLastUnet.from_unet(model)
    return None


class OnnxNetwork(nn.Module):
    """A network ``(x (B, H, D), t (B,)) -> output (B, ...)`` run by ONNX Runtime on the CPU."""

    def __init__(self, model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.session = _onnx_session(model, example)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        inputs = {"x": x.detach().contiguous().numpy(), "t": t.detach().numpy()}
        return torch.from_numpy(self.session.run(None, inputs)[0])


class SplitByBatch(nn.Module):
    """Runs batches of up to ``SMALL_BATCH`` windows through ``small``, larger ones through
    ``large`` (two graphs of the same function)."""

    def __init__(self, small: nn.Module, large: nn.Module) -> None:
        super().__init__()
        self.small, self.large = small, large

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (self.small if len(x) <= SMALL_BATCH else self.large)(x, t)


def _has_onnx() -> bool:
    return all(
        importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript")
    )


def resolve_backend(backend: Backend, device: torch.device) -> Backend:
    """The backend that ``backend`` means on ``device`` (``"auto"`` resolved)."""
    if backend not in get_args(Backend):
        raise ValueError(f"unknown backend {backend!r}; choose one of {get_args(Backend)}")
    if backend == "auto":
        if device.type != "cpu":
            return "eager"
        return "hybrid" if _has_onnx() else "matrix"
    return backend


def build_denoiser(model: nn.Module, backend: Backend, device: torch.device) -> nn.Module:
    """``model`` (eval mode, on ``device``) as the ``backend`` runs it; same call signature.

    ``model`` takes windows ``x (B, H, D)`` and steps ``t (B,)`` and has ``horizon`` and
    ``transition_dim`` attributes: a :class:`TemporalUnet` (possibly inside
    :class:`ClassifierFreeGuidance`) or a value network. Attention-free U-Nets, and value
    networks of up to ``FLAT_MAX_HORIZON`` steps, get a matrix-product copy
    (:func:`matrix_copy`); other networks run as they are.
    """
    model.eval()
    backend = resolve_backend(backend, device)
    if backend == "eager":
        return model
    if backend in ("onnx", "hybrid") and device.type != "cpu":
        raise ValueError(
            f"the {backend} backend runs on the CPU, not {device}; use eager or matrix"
        )
    horizon, dim = model.horizon, model.transition_dim
    example = (
        torch.zeros(2, horizon, dim, device=device),
        torch.zeros(2, dtype=torch.long, device=device),
    )
    copy = matrix_copy(model) or model
    if backend == "matrix":
        return copy
    exported = OnnxNetwork(copy, example)
    return SplitByBatch(exported, copy) if backend == "hybrid" else exported


def gradient_network(value_net: nn.Module, backend: Backend, device: torch.device) -> nn.Module:
    """The network value guidance differentiates, ``(x (B, H, D), t (B,)) -> (B,)``: the
    flat copy of a :class:`ValueNetwork` of up to ``FLAT_MAX_HORIZON`` steps when
    ``backend`` runs on the CPU and is not eager; otherwise ``value_net`` itself."""
    if resolve_backend(backend, device) == "eager" or device.type != "cpu":
        return value_net
    copy = matrix_copy(value_net)
    return copy if isinstance(copy, FlatValueNetwork) else value_net
