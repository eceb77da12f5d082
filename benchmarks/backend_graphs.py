"""One denoiser call through each graph the planning backends can run, per horizon and batch.

    python benchmarks/backend_graphs.py --threads 1

Times a forward pass of the issue-5 U-Net (dim 32, mults (1, 2, 4), random weights) at
H = 8, 16 and 32 and batches 1, 10 and 64 through: eager PyTorch; ONNX Runtime running
the convolutional graph, the channels-last copy and the flat copy; eager PyTorch running
the two copies; with --compiled also AOTInductor running them (torch.export, then
``aoti_compile_and_package``: 20-60 s per graph). The fastest graph per (H, batch) is
what ``diffusion/backends.py`` picks (``FLAT_MAX_HORIZON``, ``SMALL_BATCH``). Also prints
the eager FLOPs per window, so that each time can be read against the matrix-product peak.
"""

from __future__ import annotations

import tempfile
import time
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
    compiled: bool = False
    """Also time AOTInductor builds of the copies (a compile of 20-60 s each)."""


def milliseconds(call: Callable[[], object], seconds: float) -> float:
    """Mean wall time of ``call()`` in ms."""
    for _ in range(5):
        call()
    began, calls = time.perf_counter(), 0
    while calls < 5 or time.perf_counter() - began < seconds:
        call()
        calls += 1
    return 1e3 * (time.perf_counter() - began) / calls


def aot_inductor(model: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> Callable:
    """``model`` exported with a dynamic batch and compiled ahead of time by Inductor."""
    batch = torch.export.Dim.DYNAMIC
    with torch.no_grad():
        program = torch.export.export(model, example, dynamic_shapes=({0: batch}, {0: batch}))
    with tempfile.TemporaryDirectory() as folder:
        path = torch._inductor.aoti_compile_and_package(program, package_path=f"{folder}/m.pt2")
        return torch._inductor.aoti_load_package(path)


def graphs(
    unet: TemporalUnet, compiled: bool
) -> dict[str, Callable[[torch.Tensor, torch.Tensor], object]]:
    """Each graph as a call ``(x (B, H, D), t (B,)) -> (B, H, D)``."""
    example = (torch.zeros(2, unet.horizon, unet.transition_dim), torch.zeros(2, dtype=torch.long))
    copies = {"channels-last": ChannelsLastUnet.from_unet(unet), "flat": FlatUnet.from_unet(unet)}
    calls: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {"eager": unet}
    for name, model in [("conv", unet), *copies.items()]:
        session = _onnx_session(model, example)
        calls[f"onnx {name}"] = lambda x, t, s=session: s.run(
            None, {"x": x.numpy(), "t": t.numpy()}
        )
    for name, model in copies.items():
        calls[f"eager {name}"] = model
        if compiled:
            calls[f"aoti {name}"] = aot_inductor(model, example)
    return calls


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    print(f"threads {options.threads}: ms per denoiser call (U-Net dim 32, mults (1, 2, 4))")
    for horizon in options.horizons:
        unet = TemporalUnet(horizon, 23, dim_mults=(1, 2, 4)).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            unet(torch.zeros(1, horizon, 23), torch.zeros(1, dtype=torch.long))
        calls = graphs(unet, options.compiled)
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
