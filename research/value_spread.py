"""How much the value network can choose: its spread over one state's plans against its
spread over the data's states.

    python research/value_spread.py --dataset DATA --diffusion RUN --value RUN

Draws --states windows of the dataset (seeded), samples --candidates plans from each
window's first state (the default sampler) and scores every plan with the value network,
as the planner's value choice does. Prints the mean over states of the standard deviation
of the scores across one state's plans (what a choice can gain), the standard deviation of
the network's scores of the data's own windows across states (how far values of the data
range), and their ratio. A ratio near 0: every plan from a state looks alike to the value
network, so choosing among them changes little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from action_error import drawn_windows  # research/ is on the path when run as a script

from diffplan.checkpoints.loading import load_generator, load_value_network
from diffplan.data.sources import load_dataset


@dataclass
class Options:
    dataset: str
    """Dataset source the models were trained on."""
    diffusion: Path
    """Diffusion run or checkpoint."""
    value: Path
    """Value network run or checkpoint (diffplan train-value)."""
    states: int = 200
    """Dataset windows whose first states are planned from."""
    candidates: int = 64
    """Plans sampled per state."""
    from_row: int = 0
    """Score each plan from this row on (its later rows edge-padded to H): the value of the
    state a plan reaches after that many actions instead of the state it starts from."""
    threads: int = 1
    """torch CPU threads."""


def from_row(windows: torch.Tensor, row: int) -> torch.Tensor:
    """``(B, H, D)`` windows -> the same shape starting at ``row``, the last row repeated."""
    tail = windows[:, row:]
    return torch.cat([tail, tail[:, -1:].expand(-1, row, -1)], dim=1)


def main(options: Options) -> None:
    torch.set_num_threads(options.threads)
    generator = load_generator(options.diffusion)
    value = load_value_network(options.value)
    batch, raw = drawn_windows(load_dataset(options.dataset), generator, options.states)
    first_states = raw[:, 0, : generator.obs_dim]
    starts = first_states.repeat_interleave(options.candidates, dim=0)
    with torch.inference_mode():
        plans = generator.sample(starts, generator=torch.Generator().manual_seed(1))
        steps = torch.zeros(len(plans), dtype=torch.long)
        scores = value(from_row(generator.normalizer.normalize(plans), options.from_row), steps)
        data_scores = value(batch.window, torch.zeros(options.states, dtype=torch.long))
    within = scores.reshape(options.states, options.candidates).std(dim=1).mean()
    across = data_scores.std()
    print(
        f"{options.diffusion}  from row {options.from_row}: within one state's "
        f"{options.candidates} plans: {within:.4f}  across the data's states: {across:.4f}  "
        f"ratio {within / across:.4f}"
    )


if __name__ == "__main__":
    main(tyro.cli(Options))
