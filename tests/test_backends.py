"""Every planning backend computes the eager network's function (to 1e-5), on maintained paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
import torch

from diffplan.diffusion.backends import Backend, build_denoiser, resolve_backend
from diffplan.models import TemporalUnet

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


def test_no_warning_is_hidden_in_src():
    hiding = re.compile(r"filterwarnings|catch_warnings|simplefilter")
    offenders = [p.name for p in SRC.rglob("*.py") if hiding.search(p.read_text())]
    assert offenders == []
