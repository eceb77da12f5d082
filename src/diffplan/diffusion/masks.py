"""Conditioning and loss weights as ``(H, D)`` data, shared by training and sampling.

Row layout ``[obs | act]`` (see :mod:`diffplan.data.windows`). The inpainting
mask is True where values are fixed: the current state, i.e. row 0's
observation columns. The same mask is imposed on the noisy training input, on
every sampling step, and removed from the loss (fixed entries carry no error).
"""

from __future__ import annotations

import torch


def state_mask(horizon: int, obs_dim: int, act_dim: int) -> torch.Tensor:
    """``(H, D)`` bool: True at row 0's observation columns (the conditioned current state)."""
    mask = torch.zeros(horizon, obs_dim + act_dim, dtype=torch.bool)
    mask[0, :obs_dim] = True
    return mask


def state_values(observations: torch.Tensor, horizon: int, act_dim: int) -> torch.Tensor:
    """``(B, obs_dim)`` current observations -> ``(B, H, D)``: them at row 0, zeros elsewhere."""
    batch, obs_dim = observations.shape
    values = observations.new_zeros(batch, horizon, obs_dim + act_dim)
    values[:, 0, :obs_dim] = observations
    return values


def impose(x: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x (B, H, D)`` with ``values (B, H, D)`` where ``mask (H, D)`` is True."""
    return torch.where(mask, values, x)


def loss_weights(
    horizon: int,
    obs_dim: int,
    act_dim: int,
    *,
    action_weight: float = 10.0,
    discount: float = 1.0,
) -> torch.Tensor:
    """``(H, D)`` float32 loss weights (Diffuser's scheme).

    Row ``h`` is weighted ``discount ** h``, rescaled to mean 1 over the horizon; the
    first action (row 0's action columns) is then set to ``action_weight``.
    """
    if action_weight < 0 or not 0 < discount <= 1:
        raise ValueError(
            f"need action_weight >= 0 and 0 < discount <= 1, got {action_weight} and {discount}"
        )
    rows = discount ** torch.arange(horizon, dtype=torch.float64)
    weights = (rows / rows.mean())[:, None].repeat(1, obs_dim + act_dim)
    weights[0, obs_dim:] = action_weight
    return weights.float()
