"""H2O: heavy hitters by accumulated attention, plus recent tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.methods.base import FORCED, LayerView, Method, block_rows, top_positions


@dataclass
class H2O(Method):
    """Keep the B/2 most recent tokens and the B/2 tokens with the most accumulated attention.

    score[j] = sum_{i >= j} A[i, j],

    the column sums of the causal attention over every prompt query, with A
    averaged over the query heads that share a KV head. The most recent
    floor(B/2) positions are kept, and the B - floor(B/2) highest scores among
    the rest. Column sums are accumulated over blocks of query rows whose size
    ``block_rows`` bounds, so extra memory stays flat as n grows, never O(n^2).

    Source: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative
    Inference of Large Language Models", NeurIPS 2023 (arXiv:2306.14048),
    with its equal split between heavy hitters and recent tokens.
    """

    name = "h2o"

    def min_budget(self) -> int:
        return 2

    def score(self, view: LayerView) -> torch.Tensor:
        n = view.num_tokens
        scores = torch.zeros(view.num_kv_heads, n, device=view.keys.device)  # (kv_heads, n)
        rows_per_block = block_rows(n, view.group_size)
        for kv_head in range(view.num_kv_heads):
            for start in range(0, n, rows_per_block):
                positions = torch.arange(start, min(start + rows_per_block, n), device=view.keys.device)
                rows = view.attention_rows(kv_head, positions)  # (block, max position + 1)
                scores[kv_head] += F.pad(rows.sum(dim=0), (0, n - rows.shape[1]))
        return scores

    def keep(self, scores: torch.Tensor, budget: int) -> torch.Tensor:
        recent = budget // 2
        scores = scores.clone()
        if recent:
            scores[:, -recent:] = FORCED
        return top_positions(scores, budget)
