"""Every planning backend computes the eager network's function (to 1e-5), on maintained paths,
through a lean graph."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
import torch
import torch.nn.functional as F

from diffplan.diffusion.backends import (
    Backend,
    build_denoiser,
    matrix_copy,
    onnx_graph,
    resolve_backend,
)
from diffplan.models import TemporalUnet
from diffplan.models.flat import Mish, mish

SRC = Path(__file__).resolve().parents[1] / "src" / "diffplan"


@pytest.mark.parametrize("backend", get_args(Backend))
@pytest.mark.parametrize("horizon", [8, 16])  # the flat copy, then the channels-last one
def test_every_backend_computes_the_eager_function(backend, horizon):
    if resolve_backend(backend, torch.device("cpu")) in ("onnx", "hybrid"):
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    torch.manual_seed(horizon)
    model = TemporalUnet(horizon, 5, dim=8, dim_mults=(1, 2)).eval()
    fast = build_denoiser(model, backend, torch.device("cpu"))
    x, t = torch.randn(9, horizon, 5), torch.randint(0, 10, (9,))
    with torch.inference_mode():
        for batch in (1, 4, 9):  # both sides of SMALL_BATCH, sizes other than the example's
            got, want = fast(x[:batch], t[:batch]), model(x[:batch], t[:batch])
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_the_onnx_graph_normalises_each_group_norm_in_one_node():
    """ONNX Runtime's time grows with the node count (docs/PERFORMANCE.md): each GroupNorm
    of the flat copy reaches it as one LayerNormalization with its scale and shift folded
    in, and the copy's layout needs no transposes but at the window's way in and out."""
    pytest.importorskip("onnxscript")
    model = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2)).eval()
    example = (torch.zeros(2, 8, 5), torch.zeros(2, dtype=torch.long))
    nodes = onnx_graph(matrix_copy(model), example).graph.node
    norms = [node for node in nodes if node.op_type == "LayerNormalization"]
    assert len(norms) == sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert all(len(node.input) == 3 for node in norms)  # x, scale, shift
    normed = {node.output[0] for node in norms}
    assert not [
        node.op_type
        for node in nodes
        if normed & set(node.input) and node.op_type in ("Mul", "Add")
    ]
    assert sum(node.op_type == "Transpose" for node in nodes) == 2


def test_the_copies_mish_is_mish_and_exports_as_one_node():
    """The flat copies' Mish (a sigmoid and products, its slope saved for the backward pass)
    matches ``F.mish`` and its gradient, with and without autograd, and exports as ``Mish``."""
    x = torch.linspace(-60, 60, 20001).requires_grad_(True)
    got, want = mish(x), F.mish(x)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    (got_slope,), (want_slope,) = (torch.autograd.grad(y.sum(), x) for y in (got, want))
    torch.testing.assert_close(got_slope, want_slope, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(mish(x.detach()), want.detach(), rtol=1e-6, atol=1e-6)
    pytest.importorskip("onnxscript")
    copy = matrix_copy(TemporalUnet(8, 5, dim=8, dim_mults=(1, 2)).eval())
    example = (torch.zeros(2, 8, 5), torch.zeros(2, dtype=torch.long))
    ops = [node.op_type for node in onnx_graph(copy, example).graph.node]
    assert "Sigmoid" not in ops
    # one per Mish module and one for the step embedding's term of the residual blocks
    assert ops.count("Mish") == sum(isinstance(m, Mish) for m in copy.modules()) + 1


def test_the_flat_copy_computes_the_step_terms_once_only_where_every_row_has_them():
    """One step for the whole batch: the residual blocks' step terms come from one row; rows
    of the same step but different return conditions (classifier-free guidance) keep theirs."""
    torch.manual_seed(0)
    model = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2), returns_condition=True).eval()
    copy = matrix_copy(model)
    x, t = torch.randn(6, 8, 5), torch.full((6,), 7)
    returns, keep = torch.linspace(-1, 1, 6), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    with torch.inference_mode():
        for condition in ((), (returns, keep), (torch.zeros(6), keep)):
            torch.testing.assert_close(
                copy(x, t, *condition), model(x, t, *condition), rtol=1e-5, atol=1e-5
            )


def test_no_warning_is_hidden_in_src():
    hiding = re.compile(r"filterwarnings|catch_warnings|simplefilter")
    offenders = [p.name for p in SRC.rglob("*.py") if hiding.search(p.read_text())]
    assert offenders == []
