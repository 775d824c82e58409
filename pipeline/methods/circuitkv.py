"""CircuitKV: causal influence walkers on the attention graph."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from pipeline.methods.base import FORCED, LayerView, Method
from pipeline.methods.walkers import normalize_visits, walk_visits


@dataclass
class CircuitKV(Method):
    """Keep the tokens that random walks from the query visit most often.

    Per layer and KV head, with A the causal attention averaged over the
    group's query heads, N walkers start at the last prompt position and move
    from i to j in {s, ..., i-1} (s = ``num_sinks``) with probability
    A[i, j]^(1/T) / sum_k A[i, k]^(1/T), for at most S steps. With v[j] the
    visit count (start included), the score is s[j] = v[j] / sqrt(n - j).
    The sinks, the last ``window`` positions and the top B - s - window scores
    are kept.

    Attributes:
        num_walkers: N, walkers per layer and KV head.
        max_steps: S, moves per walker.
        temperature: T; below 1 sharpens the transitions, above 1 flattens them.
        num_sinks: Initial tokens always kept and never entered by a walker.
        window: Most recent positions always kept.
    """

    name = "circuitkv"
    num_walkers: int = 1024
    max_steps: int = 10
    temperature: float = 1.0
    num_sinks: int = 4
    window: int = 32

    def min_budget(self) -> int:
        return self.num_sinks + self.window

    def score(self, view: LayerView) -> torch.Tensor:
        n = view.num_tokens
        scores = []
        for kv_head in range(view.num_kv_heads):
            visits = walk_visits(
                partial(view.attention_rows, kv_head),
                num_tokens=n,
                start=n - 1,
                num_walkers=self.num_walkers,
                max_steps=self.max_steps,
                temperature=self.temperature,
                num_sinks=self.num_sinks,
                generator=view.generator,
            )  # (n,)
            scores.append(normalize_visits(visits).float())
        scores = torch.stack(scores)  # (kv_heads, n)

        scores[:, : self.num_sinks] = FORCED
        scores[:, max(n - self.window, 0) :] = FORCED
        return scores
