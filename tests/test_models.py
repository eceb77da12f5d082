"""Temporal U-Net and value network: shapes, horizon checks, step conditioning."""

from __future__ import annotations

import pytest
import torch

from diffplan.models import TemporalUnet, ValueNetwork
from diffplan.models.channels_last import ChannelsLastUnet
from diffplan.models.flat import FlatUnet, FlatValueNetwork, linear_operator

MULTS = [(1, 2, 4), (1, 2, 4, 8)]


@pytest.mark.parametrize("horizon", [8, 16, 32])
@pytest.mark.parametrize("dim_mults", MULTS)
def test_unet_keeps_window_shape(horizon: int, dim_mults: tuple[int, ...]) -> None:
    model = TemporalUnet(horizon, 23, dim=8, dim_mults=dim_mults)
    x = torch.randn(3, horizon, 23)
    out = model(x, torch.tensor([0, 7, 19]))
    assert out.shape == (3, horizon, 23)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("horizon", [8, 32])
def test_value_network_gives_one_scalar_per_window(horizon: int) -> None:
    model = ValueNetwork(horizon, 23, dim=8, dim_mults=(1, 2, 4, 8), hidden=16)
    assert model(torch.randn(4, horizon, 23), torch.arange(4)).shape == (4,)


def test_report_size_unet_has_diffusers_parameter_count() -> None:
    # dim 32, mults (1, 2, 4, 8) on Walker2d (D = 23): ~3.96 M parameters like the original.
    model = TemporalUnet(8, 23)
    assert 3.9e6 < sum(p.numel() for p in model.parameters()) < 4.0e6


@pytest.mark.parametrize("network", [TemporalUnet, ValueNetwork])
@pytest.mark.parametrize(
    ("horizon", "dim_mults"), [(12, (1, 2, 4, 8)), (6, (1, 2, 4)), (4, (1, 2, 4, 8))]
)
def test_horizon_not_divisible_is_refused(network: type, horizon: int, dim_mults: tuple) -> None:
    with pytest.raises(ValueError, match=r"multiple of 2\*\*\(levels-1\)"):
        network(horizon, 23, dim=8, dim_mults=dim_mults)


def test_bad_width_and_input_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        TemporalUnet(8, 23, dim=12)
    with pytest.raises(ValueError, match="dim_mults"):
        TemporalUnet(8, 23, dim=8, dim_mults=())
    model = TemporalUnet(8, 23, dim=8, dim_mults=(1, 2))
    with pytest.raises(ValueError, match=r"expected windows \(B, 8, 23\)"):
        model(torch.randn(2, 16, 23), torch.zeros(2, dtype=torch.long))


def test_attention_variant_adds_parameters_and_runs() -> None:
    torch.manual_seed(0)
    plain = TemporalUnet(16, 5, dim=8, dim_mults=(1, 2))
    torch.manual_seed(0)
    attended = TemporalUnet(16, 5, dim=8, dim_mults=(1, 2), attention=True)
    size = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert size(attended) > size(plain)
    x, t = torch.randn(2, 16, 5), torch.tensor([3, 4])
    assert attended(x, t).shape == (2, 16, 5)


def test_output_depends_on_diffusion_step() -> None:
    model = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2))
    x = torch.randn(1, 8, 5).repeat(2, 1, 1)
    out = model(x, torch.tensor([0, 15]))
    assert not torch.allclose(out[0], out[1])


def test_windows_are_processed_independently() -> None:
    # GroupNorm, no batch statistics: a window's output does not depend on its batch mates.
    # Batch statistics would move outputs by O(0.1); float32 kernels chosen per batch size
    # (they differ between CPUs) move them by O(1e-6).
    torch.manual_seed(0)
    model = TemporalUnet(8, 5, dim=8, dim_mults=(1, 2, 4, 8))
    x, t = torch.randn(4, 8, 5), torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(model(x, t)[:2], model(x[:2], t[:2]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("copy_class", [ChannelsLastUnet, FlatUnet])
@pytest.mark.parametrize(
    ("horizon", "dim_mults", "batch"), [(8, (1, 2, 4), 1), (8, (1, 2, 4, 8), 6), (32, (1, 2, 4), 3)]
)
def test_matrix_product_copies_compute_the_same_function(
    copy_class: type[ChannelsLastUnet | FlatUnet],
    horizon: int,
    dim_mults: tuple[int, ...],
    batch: int,
) -> None:
    torch.manual_seed(0)
    unet = TemporalUnet(horizon, 23, dim=16, dim_mults=dim_mults).eval()
    with torch.no_grad():  # move every weight off its initialisation (GroupNorm's are 1 and 0)
        for parameter in unet.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    copy = copy_class.from_unet(unet)
    x, t = torch.randn(batch, horizon, 23), torch.randint(0, 20, (batch,))
    with torch.no_grad():
        torch.testing.assert_close(copy(x, t), unet(x, t), rtol=1e-4, atol=1e-5)
        before = copy(x, t)
        unet.final[1].bias.add_(1.0)  # the copy owns its weights
        torch.testing.assert_close(copy(x, t), before)


@pytest.mark.parametrize("copy_class", [ChannelsLastUnet, FlatUnet])
def test_matrix_product_copies_refuse_attention(
    copy_class: type[ChannelsLastUnet | FlatUnet],
) -> None:
    with pytest.raises(ValueError, match="no attention"):
        copy_class.from_unet(TemporalUnet(8, 5, dim=8, dim_mults=(1, 2), attention=True))


@pytest.mark.parametrize(
    "layer",
    [
        torch.nn.Conv1d(6, 4, 5, padding=2),
        torch.nn.Conv1d(6, 4, 3, stride=2, padding=1),
        torch.nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1),
    ],
)
def test_flat_operator_of_a_convolution_on_split_inputs(layer: torch.nn.Module) -> None:
    """A layer reading ``[x, skip]`` (2 + 4 channels) equals one product of the flattened,
    time-major halves with its operator."""
    torch.manual_seed(1)
    x = torch.randn(3, 6, 8)
    weight, bias = linear_operator(layer, [2, 4], 8)
    halves = [x[:, :2].transpose(1, 2).flatten(1), x[:, 2:].transpose(1, 2).flatten(1)]
    flat = torch.cat(halves, dim=1) @ weight + bias
    with torch.no_grad():
        expected = layer(x).transpose(1, 2).flatten(1)
    torch.testing.assert_close(flat, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("horizon", "dim_mults"), [(8, (1, 2, 4)), (8, (1, 2, 4, 8)), (4, (1, 2))])
def test_flat_value_network_has_the_same_values_and_gradients(
    horizon: int, dim_mults: tuple[int, ...]
) -> None:
    torch.manual_seed(2)
    value = ValueNetwork(horizon, 23, dim=16, dim_mults=dim_mults, hidden=32).eval()
    with torch.no_grad():
        for parameter in value.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    flat = FlatValueNetwork.from_value(value)
    x, t = torch.randn(5, horizon, 23), torch.randint(0, 20, (5,))
    gradients = []
    for network in (value, flat):
        inputs = x.clone().requires_grad_(True)
        out = network(inputs, t)
        (grad,) = torch.autograd.grad(out.sum(), inputs)
        gradients.append((out.detach(), grad))
    (expected, expected_grad), (values, grad) = gradients
    torch.testing.assert_close(values, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in flat.parameters())  # guidance moves x only
