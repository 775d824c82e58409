"""Expected visit counts of the backward walk, computed exactly instead of sampled.

Every move goes to an earlier position, so the transition matrix P of the
walk (``walkers.py``) is strictly lower-triangular and the expected visits
have a closed form. With pi_0 the start distribution (walkers per position)
and S the largest number of moves,

    x = pi_0 (I + P + P^2 + ... + P^S),    x = pi_0 (I - P)^-1 for S = None,

where the sum runs to t = S because the start counts as a visit. One sweep
over blocks of rows, from the last block to the first, computes x: inside a
block, a small triangular system (S = None) or S matrix-vector steps give the
block's visits, which are then pushed to every earlier position. Each
attention row is computed once. Blocks shrink as n grows (``block_rows``), so
a block's memory stays flat; a finite S adds O(S x n).
"""

from __future__ import annotations

import torch

from pipeline.methods.base import block_rows
from pipeline.methods.walkers import RowFunction, transition_weights


def transition_probabilities(
    rows: RowFunction, sources: torch.Tensor, width: int, target_low: int, temperature: float
) -> torch.Tensor:
    """Transition probabilities of ``sources`` over targets {l, ..., l + width - 1}, in float64.

    A row without mass on its targets is all zero: its walkers stop.

    Returns:
        Probabilities of shape (m, width).
    """
    weights = transition_weights(rows, sources, width, target_low, temperature).double()  # (m, width)
    total = weights.sum(dim=-1, keepdim=True)  # (m, 1)
    # Rows without mass stay zero: 0 / tiny = 0.
    return weights.div_(total.clamp_min_(torch.finfo(torch.float64).tiny))


def expected_visits(
    rows: RowFunction,
    num_tokens: int,
    start_mass: torch.Tensor,
    max_steps: int | None,
    temperature: float,
    num_sinks: int,
    absorbing: bool = False,
    block: int | None = None,
) -> torch.Tensor:
    """Return the expected visit counts x = pi_0 sum_{t <= S} P^t, shape (num_tokens,), in float64.

    Args:
        rows: Attention rows of given positions, (m,) -> (m, w) with w > max position;
            row i is zero after column i.
        start_mass: pi_0, walkers starting at each position, shape (num_tokens,).
        max_steps: S, most moves per walker; None for no limit.
        absorbing: Whether a move into a sink ends the walk (else sinks are never entered).
        block: Rows per block of the sweep; None sizes blocks by ``block_rows``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 or None, got {max_steps}")
    if start_mass.shape != (num_tokens,):
        raise ValueError(f"start_mass must have shape ({num_tokens},), got {tuple(start_mass.shape)}")
    device = start_mass.device
    block = block or block_rows(num_tokens, 1)
    target_low = 0 if absorbing else num_sinks
    first_moving = num_sinks if absorbing else num_sinks + 1

    # incoming[t, j]: mass that reaches j after exactly t moves from positions above the current block.
    num_layers = 1 if max_steps is None else max_steps + 1
    incoming = torch.zeros(num_layers, num_tokens, dtype=torch.float64, device=device)  # (S + 1, n)
    incoming[0] = start_mass.double()
    visits = torch.zeros(num_tokens, dtype=torch.float64, device=device)  # (n,)

    occupied = start_mass.nonzero()
    top = int(occupied.max()) if len(occupied) else -1
    while top >= first_moving:
        low = max(top - block + 1, first_moving)
        size = top - low + 1
        sources = torch.arange(low, top + 1, device=device)  # (b,)
        probabilities = transition_probabilities(rows, sources, top - target_low, target_low, temperature)
        earlier = probabilities[:, : low - target_low]  # (b, low - l): moves that leave the block
        inner = torch.zeros(size, size, dtype=torch.float64, device=device)  # (b, b): moves inside the block
        inner[:, : size - 1] = probabilities[:, low - target_low :]

        if max_steps is None:
            # x[j] = incoming[j] + sum_{i > j} x[i] P[i, j]: an upper-triangular system in x's column form.
            system = torch.eye(size, dtype=torch.float64, device=device) - inner.T  # (b, b)
            block_visits = torch.linalg.solve_triangular(
                system, incoming[0, low : top + 1].unsqueeze(1), upper=True
            ).squeeze(1)  # (b,)
            visits[low : top + 1] = block_visits
            incoming[0, target_low:low] += block_visits @ earlier
        else:
            # mass[t] = incoming[t] + mass[t - 1] P_inner: walkers inside the block after exactly t moves.
            mass = torch.zeros(num_layers, size, dtype=torch.float64, device=device)  # (S + 1, b)
            mass[0] = incoming[0, low : top + 1]
            for step in range(1, num_layers):
                mass[step] = incoming[step, low : top + 1] + mass[step - 1] @ inner
            visits[low : top + 1] = mass.sum(dim=0)
            incoming[1:, target_low:low] += mass[:-1] @ earlier  # one more move to leave the block
        top = low - 1

    # Positions that never move keep what reaches them.
    below = min(first_moving, top + 1)
    visits[:below] = incoming[:, :below].sum(dim=0)
    return visits
