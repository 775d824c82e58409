"""Monte Carlo random walkers on the causal attention graph.

N walkers start at given prompt positions and move strictly backwards. From
position i a walker moves to j in {l, ..., i-1} with probability

    P(i -> j) = A[i, j]^(1/T) / sum_{k=l}^{i-1} A[i, k]^(1/T),

where A is the causal attention and l the lowest target. With s sink tokens:

- excluded sinks (l = s): walkers never enter a sink and stop at position s,
  where no move is left;
- absorbing sinks (l = 0): a move into a sink ends the walk, like current
  reaching ground.

A walker also stops when its row has no mass on its targets, or after S moves
(S = None: no limit). The visit count v[j] is the number of (walker, step)
pairs at j, the start included.

Only the attention rows of positions that walkers occupy are computed, each
once, in blocks, so the n x n attention matrix is never built.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# Attention rows of the given positions: (m,) -> (m, w) with w > max position, zero after each row's position.
RowFunction = Callable[[torch.Tensor], torch.Tensor]

ROW_BLOCK = 256


def transition_weights(
    rows: RowFunction, sources: torch.Tensor, width: int, target_low: int, temperature: float
) -> torch.Tensor:
    """Unnormalized transition weights A[i, j]^(1/T) of ``sources`` over targets {l, ..., l + width - 1}.

    Columns at or after each source are zero: a walker never stays put.

    Returns:
        Weights of shape (m, width).
    """
    attention = rows(sources)[:, target_low : target_low + width + 1].float()  # (m, <= width + 1)
    # One spare column holds the source's own column when the source is the block's top.
    if attention.shape[1] < width + 1:
        attention = F.pad(attention, (0, width + 1 - attention.shape[1]))  # (m, width + 1)
    # The row tensor is ours, so it is edited in place: blocks of rows dominate the scorers' memory.
    own = (sources - target_low).unsqueeze(1)  # (m, 1)
    attention.scatter_(1, own, 0.0)
    attention = attention[:, :width]  # (m, width)
    if temperature != 1.0:
        attention.pow_(1.0 / temperature)
    return attention


def _transition_cdfs(
    rows: RowFunction, sources: torch.Tensor, width: int, target_low: int, temperature: float
) -> torch.Tensor:
    """Normalized transition CDFs of ``sources`` over targets {l, ..., l + width - 1}.

    A row without mass on its targets is returned as NaN, which marks its
    walkers as stuck.

    Returns:
        CDFs of shape (m, width) that end at 1.
    """
    weights = transition_weights(rows, sources, width, target_low, temperature)  # (m, width)
    cdf = torch.cumsum(weights, dim=-1)  # (m, width)
    total = cdf[:, -1:].clone()  # (m, 1)
    cdf = cdf / total  # NaN where total == 0
    cdf[:, -1] = torch.where(total[:, 0] > 0, 1.0, torch.nan)  # exactly 1 despite rounding
    return cdf


def _sample_targets(cdf: torch.Tensor, row: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Return, per walker, the first column of its CDF row that exceeds its uniform draw.

    A vectorized bisection over each walker's own row; it never gathers whole rows.

    Args:
        cdf: CDFs of shape (rows, width), non-decreasing and ending at 1.
        row: Row of each walker, shape (k,).
        uniform: Draws in [0, 1), shape (k,).
    """
    width = cdf.shape[1]
    flat = cdf.view(-1)
    low = torch.zeros_like(row)
    high = torch.full_like(row, width - 1)
    base = row * width
    while bool((low < high).any()):
        middle = (low + high) // 2
        above = flat[base + middle] > uniform
        high = torch.where(above, middle, high)
        low = torch.where(above, low, middle + 1)
    return low


def walk_visits(
    rows: RowFunction,
    num_tokens: int,
    start: int | torch.Tensor,
    num_walkers: int,
    max_steps: int | None,
    temperature: float,
    num_sinks: int,
    generator: torch.Generator,
    absorbing: bool = False,
) -> torch.Tensor:
    """Simulate the walkers and return visit counts of shape (num_tokens,).

    Walkers are independent and only move backwards, so the simulation sweeps
    blocks of ``ROW_BLOCK`` positions from the end of the prompt: inside a
    block every walker there moves, repeatedly, until all have left it or
    stopped. Each occupied position's attention row is computed once, and
    peak extra memory is O(ROW_BLOCK x n). Moves are drawn by inverse-CDF
    sampling, seeded through ``generator``: a seed reproduces the counts on
    one device.

    Args:
        rows: Attention rows of given positions, (m,) -> (m, w) with w > max position;
            row i is zero after column i.
        start: One start position for every walker, or each walker's own, shape (num_walkers,).
        max_steps: Most moves per walker; None for no limit.
        absorbing: Whether a move into a sink ends the walk (else sinks are never entered).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 or None, got {max_steps}")
    device = generator.device
    positions = torch.as_tensor(start, dtype=torch.long, device=device).expand(num_walkers).clone()  # (N,)
    if positions.min() < 0 or positions.max() >= num_tokens:
        raise ValueError(f"start positions must lie in the prompt of {num_tokens} tokens")
    limit = max_steps if max_steps is not None else num_tokens  # a walk has fewer than n moves
    target_low = 0 if absorbing else num_sinks
    # Positions below this one never move: the sinks, and position s when sinks are excluded.
    first_moving = num_sinks if absorbing else num_sinks + 1

    steps = torch.zeros(num_walkers, dtype=torch.long, device=device)  # (N,)
    alive = torch.ones(num_walkers, dtype=torch.bool, device=device)
    visits = torch.zeros(num_tokens, dtype=torch.float64, device=device)
    visits.index_add_(0, positions, torch.ones(num_walkers, dtype=visits.dtype, device=device))

    while True:
        alive &= (positions >= first_moving) & (steps < limit)
        if not alive.any():
            break

        # Targets of this block's walkers lie in {target_low, ..., block_top - 1}.
        block_top = int(positions[alive].max())
        block_low = max(block_top - ROW_BLOCK + 1, first_moving)
        width = block_top - target_low
        cdf = torch.zeros(block_top - block_low + 1, width, device=device)  # (rows, width)
        ready = torch.zeros(block_top - block_low + 1, dtype=torch.bool, device=device)

        while True:
            walkers = (alive & (positions >= block_low)).nonzero().squeeze(1)  # (k,)
            if len(walkers) == 0:
                break
            row = positions[walkers] - block_low  # (k,)

            missing = torch.unique(row[~ready[row]])
            if len(missing):
                cdf[missing] = _transition_cdfs(rows, missing + block_low, width, target_low, temperature)
                ready[missing] = True

            # A row without mass on its targets ends its walkers.
            stuck = cdf[row, -1].isnan()
            if stuck.any():
                alive[walkers[stuck]] = False
                walkers, row = walkers[~stuck], row[~stuck]
                if len(walkers) == 0:
                    continue

            uniform = torch.rand(len(walkers), generator=generator, device=device)
            offset = _sample_targets(cdf, row, uniform)  # (k,)
            # Rounding at the end of a CDF must never step onto or past the source.
            offset = torch.minimum(offset, positions[walkers] - 1 - target_low)

            positions[walkers] = offset + target_low
            steps[walkers] += 1
            visits.index_add_(0, positions[walkers], torch.ones(len(walkers), dtype=visits.dtype, device=device))
            alive &= (positions >= first_moving) & (steps < limit)

    return visits


def normalize_visits(visits: torch.Tensor) -> torch.Tensor:
    """Return s[j] = v[j] / sqrt(n - j), with j 0-based and n - j the distance from the prompt's end."""
    num_tokens = visits.shape[-1]
    distance = torch.arange(num_tokens, 0, -1, device=visits.device, dtype=visits.dtype)  # n - j
    return visits / distance.sqrt()
