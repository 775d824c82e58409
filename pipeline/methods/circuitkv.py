"""CircuitKV: causal influence walkers on the attention graph, and its named variants."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from pipeline.methods.base import FORCED, LayerView, Method, block_rows
from pipeline.methods.expected_visits import expected_visits
from pipeline.methods.walkers import normalize_visits, walk_visits

STARTS = ("last", "window")


@dataclass
class CircuitKV(Method):
    """Keep the tokens that random walks from the query visit most often.

    Per layer and KV head, with A the causal attention averaged over the
    group's query heads, N walkers start at the last prompt position (or
    spread evenly over the observation window) and move from i to an earlier
    j with probability A[i, j]^(1/T) / sum_k A[i, k]^(1/T), for at most S
    moves. Sinks are either excluded (targets j >= s; a walk stops at s) or
    absorbing (targets j >= 0; a move into a sink ends the walk). With v[j]
    the visit count (start included), the score is s[j] = v[j] / sqrt(n - j),
    or v[j] without normalization. The sinks, the last ``window`` positions
    and the top B - s - window scores are kept.

    With ``exact``, v is the expectation N pi_0 sum_{t <= S} P^t instead of a
    sample (see ``expected_visits``).

    Attributes:
        num_walkers: N, walkers per layer and KV head (the scale of exact visits).
        max_steps: S, most moves per walker; None for no limit.
        temperature: T; below 1 sharpens the transitions, above 1 flattens them.
        num_sinks: Initial tokens always kept.
        window: Most recent positions always kept.
        absorbing: Whether a move into a sink ends the walk; else walkers never enter sinks.
        exact: Whether visits are the exact expectation instead of a Monte Carlo sample.
        start: ``last`` (the last prompt token) or ``window`` (uniform over the window).
        normalize: Whether visits are divided by sqrt(n - j).
    """

    name = "circuitkv"
    num_walkers: int = 1024
    max_steps: int | None = 10
    temperature: float = 1.0
    num_sinks: int = 4
    window: int = 32
    absorbing: bool = False
    exact: bool = False
    start: str = "last"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ValueError(f"{self.name}: start {self.start!r} is not one of {', '.join(STARTS)}.")
        if self.num_walkers < 1:
            raise ValueError(f"{self.name}: num_walkers must be at least 1, got {self.num_walkers}.")
        if self.temperature <= 0:
            raise ValueError(f"{self.name}: temperature must be positive, got {self.temperature}.")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"{self.name}: max_steps must be >= 0 or None, got {self.max_steps}.")

    def min_budget(self) -> int:
        return self.num_sinks + self.window

    @property
    def stochastic(self) -> bool:
        return not self.exact

    def start_positions(self, num_tokens: int, device: torch.device) -> torch.Tensor:
        """Return each walker's start position, shape (num_walkers,): round-robin over the window, or the last token."""
        if self.start == "last":
            return torch.full((self.num_walkers,), num_tokens - 1, dtype=torch.long, device=device)
        first = max(num_tokens - self.window, 0)
        return first + torch.arange(self.num_walkers, device=device) % (num_tokens - first)

    def visits(self, view: LayerView, kv_head: int) -> torch.Tensor:
        """Visit counts (sampled or expected) of one KV head, shape (n,), in float64."""
        n = view.num_tokens
        rows = partial(view.attention_rows, kv_head)
        starts = self.start_positions(n, view.keys.device)  # (N,)
        if self.exact:
            start_mass = torch.zeros(n, dtype=torch.float64, device=view.keys.device)
            start_mass.index_add_(0, starts, torch.ones_like(starts, dtype=torch.float64))  # (n,)
            return expected_visits(
                rows, n, start_mass, self.max_steps, self.temperature, self.num_sinks, self.absorbing,
                block=block_rows(n, view.group_size),
            )
        return walk_visits(
            rows, n, starts, self.num_walkers, self.max_steps, self.temperature, self.num_sinks,
            view.generator, self.absorbing,
        )

    def score(self, view: LayerView) -> torch.Tensor:
        n = view.num_tokens
        scores = []
        for kv_head in range(view.num_kv_heads):
            visits = self.visits(view, kv_head)  # (n,)
            scores.append((normalize_visits(visits) if self.normalize else visits).float())
        scores = torch.stack(scores)  # (kv_heads, n)

        scores[:, : self.num_sinks] = FORCED
        scores[:, max(n - self.window, 0) :] = FORCED
        return scores


@dataclass
class CircuitKVAbsorb(CircuitKV):
    """CircuitKV with absorbing sinks: a move into a sink ends the walk, like current reaching ground."""

    name = "circuitkv-absorb"
    absorbing: bool = True


@dataclass
class CircuitKVExact(CircuitKV):
    """CircuitKV with the exact expected visits in place of sampled walkers."""

    name = "circuitkv-exact"
    exact: bool = True


@dataclass
class CircuitKVAbsorbExact(CircuitKV):
    """CircuitKV with absorbing sinks and exact expected visits."""

    name = "circuitkv-absorb-exact"
    absorbing: bool = True
    exact: bool = True
