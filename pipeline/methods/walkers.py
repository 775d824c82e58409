"""Monte Carlo random walkers on the causal attention graph.

N walkers start at one prompt position and move strictly backwards. From
position i a walker moves to j in {s, ..., i-1} (s = number of sink tokens)
with probability

    P(i -> j) = A[i, j]^(1/T) / sum_{k=s}^{i-1} A[i, k]^(1/T),

where A is the causal attention. A walker stops at position s, where no move
is left, when its row has no mass on {s, ..., i-1}, or after S moves. The visit
count v[j] is the number of (walker, step) pairs at j, the start included.

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


def _transition_cdfs(
    rows: RowFunction, sources: torch.Tensor, width: int, num_sinks: int, temperature: float
) -> torch.Tensor:
    """Normalized transition CDFs of ``sources`` over targets {num_sinks, ..., num_sinks + width - 1}.

    A row without mass on its targets is returned as NaN, which marks its
    walkers as stuck.

    Returns:
        CDFs of shape (m, width) that end at 1.
    """
    attention = rows(sources)[:, num_sinks : num_sinks + width]  # (m, <= width), zero after the source
    # One spare column holds the source's own column when the source is the block's top.
    attention = F.pad(attention, (0, width + 1 - attention.shape[1])).float()  # (m, width + 1)
    # A walker never stays put: drop the source's own column.
    own = (sources - num_sinks).unsqueeze(1)  # (m, 1)
    attention = attention.scatter(1, own, torch.zeros_like(own, dtype=attention.dtype))[:, :width]  # (m, width)
    if temperature != 1.0:
        attention = attention.pow(1.0 / temperature)
    cdf = torch.cumsum(attention, dim=-1)  # (m, width)
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
    start: int,
    num_walkers: int,
    max_steps: int,
    temperature: float,
    num_sinks: int,
    generator: torch.Generator,
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
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0 <= start < num_tokens:
        raise ValueError(f"start position {start} is outside the prompt of {num_tokens} tokens")
    device = generator.device
    positions = torch.full((num_walkers,), start, dtype=torch.long, device=device)  # (N,)
    steps = torch.zeros(num_walkers, dtype=torch.long, device=device)  # (N,)
    alive = torch.ones(num_walkers, dtype=torch.bool, device=device)
    visits = torch.zeros(num_tokens, dtype=torch.float64, device=device)
    visits[start] += num_walkers

    while True:
        alive &= (positions > num_sinks) & (steps < max_steps)
        if not alive.any():
            break

        # Targets of this block's walkers lie in {num_sinks, ..., block_top - 1}.
        block_top = int(positions[alive].max())
        block_low = max(block_top - ROW_BLOCK + 1, num_sinks + 1)
        width = block_top - num_sinks
        cdf = torch.zeros(block_top - block_low + 1, width, device=device)  # (rows, width)
        ready = torch.zeros(block_top - block_low + 1, dtype=torch.bool, device=device)

        while True:
            walkers = (alive & (positions >= block_low)).nonzero().squeeze(1)  # (k,)
            if len(walkers) == 0:
                break
            row = positions[walkers] - block_low  # (k,)

            missing = torch.unique(row[~ready[row]])
            if len(missing):
                cdf[missing] = _transition_cdfs(rows, missing + block_low, width, num_sinks, temperature)
                ready[missing] = True

            # A row without mass on earlier non-sink positions ends its walkers.
            stuck = cdf[row, -1].isnan()
            if stuck.any():
                alive[walkers[stuck]] = False
                walkers, row = walkers[~stuck], row[~stuck]
                if len(walkers) == 0:
                    continue

            uniform = torch.rand(len(walkers), generator=generator, device=device)
            offset = _sample_targets(cdf, row, uniform)  # (k,)
            # Rounding at the end of a CDF must never step onto or past the source.
            offset = torch.minimum(offset, positions[walkers] - 1 - num_sinks)

            positions[walkers] = offset + num_sinks
            steps[walkers] += 1
            visits.index_add_(0, positions[walkers], torch.ones(len(walkers), dtype=visits.dtype, device=device))
            alive &= (positions > num_sinks) & (steps < max_steps)

    return visits


def normalize_visits(visits: torch.Tensor) -> torch.Tensor:
    """Return s[j] = v[j] / sqrt(n - j), with j 0-based and n - j the distance from the prompt's end."""
    num_tokens = visits.shape[-1]
    distance = torch.arange(num_tokens, 0, -1, device=visits.device, dtype=visits.dtype)  # n - j
    return visits / distance.sqrt()
