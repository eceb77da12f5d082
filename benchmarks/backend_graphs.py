"""One denoiser call through each graph the planning backends can run, per horizon and batch.

    python benchmarks/backend_graphs.py --threads 1

Times a forward pass of the issue-5 U-Net (dim 32, mults (1, 2, 4), random weights) at
H = 8, 16 and 32 and batches 1, 10 and 64 through: eager PyTorch; ONNX Runtime running
the convolutional graph, the channels-last copy and the flat copy; TorchScript running
the two copies. The fastest graph per (H, batch) is what ``diffusion/backends.py``
picks (``FLAT_MAX_HORIZON``, ``SMALL_BATCH``). Also prints the eager FLOPs per window,
so that each time can be read against the CPU's matrix-product peak.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import tyro
from torch.utils.flop_counter import FlopCounterMode

from diffplan.diffusion.backends import _onnx_session
from diffplan.models import TemporalUnet
from diffplan.models.channels_last import ChannelsLastUnet
from diffplan.models.flat import FlatUnet


@dataclass
class Options:
    horizons: tuple[int, ...] = (8, 16, 32)
    """Window lengths H."""
    batches: tuple[int, ...] = (1, 10, 64)
    """Windows per call."""
    seconds: float = 1.0
    """Minimum time measured per graph and size (after 5 warm-up calls)."""
    threads: int = 1
    """torch and ONNX Runtime CPU threads."""


def milliseconds(call: Callable[[], object], seconds: float) -> float:
    """Mean wall time of ``call()`` in ms."""
    for _ in range(5):
        call()
    began, calls = time.perf_counter(), 0
    while calls < 5 or time.perf_counter() - began < seconds:
        call()
        calls += 1
    return 1e3 * (time.perf_counter() - began) / calls


def graphs(unet: TemporalUnet) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    """Each graph as a call ``(x (B, H, D), t (B,)) -> (B, H, D)``."""
    example = (torch.zeros(2, unet.horizon, unet.transition_dim), torch.zeros(2, dtype=torch.long))
    copies = {"channels-last": ChannelsLastUnet.from_unet(unet), "flat": FlatUnet.from_unet(unet)}
    calls: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {"eager": unet}
    for name, model in [("conv", unet), *copies.items()]:
        session = _onnx_session(model, example)
        calls[f"onnx {name}"] = lambda x, t, s=session: s.run(
            None, {"x": x.numpy(), "t": t.numpy()}
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks
        for name, model in copies.items():
            traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
            calls[f"torchscript {name}"] = traced
    return calls


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    print(f"threads {options.threads}: ms per denoiser call (U-Net dim 32, mults (1, 2, 4))")
    for horizon in options.horizons:
        unet = TemporalUnet(horizon, 23, dim_mults=(1, 2, 4)).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            unet(torch.zeros(1, horizon, 23), torch.zeros(1, dtype=torch.long))
        calls = graphs(unet)
        print(f"\nH = {horizon}: {counter.get_total_flops() / 1e6:.1f} MFLOP per window")
        print(f"{'batch':>5} " + " ".join(f"{name:>23}" for name in calls) + "  fastest")
        for batch in options.batches:
            x = torch.randn(batch, horizon, 23)
            t = torch.randint(0, 20, (batch,))
            with torch.inference_mode():
                times = {
                    name: milliseconds(lambda c=c, x=x, t=t: c(x, t), options.seconds)
                    for name, c in calls.items()
                }
            row = " ".join(f"{ms:23.3f}" for ms in times.values())
            print(f"{batch:>5} {row}  {min(times, key=times.__getitem__)}")


if __name__ == "__main__":
    main(tyro.cli(Options))
