"""SnapKV: attention from an observation window at the end of the prompt."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.methods.base import FORCED, LayerView, Method


@dataclass
class SnapKV(Method):
    """Score each prefix token by the attention the last ``window`` queries pay it.

    score[j] = mean_h maxpool_k( sum_{i in window} A_h[i, j] ),  j < n - window,

    with A_h the causal attention of query head h, the mean over the query
    heads that share a KV head, max pooling of kernel ``kernel_size`` (stride 1,
    same length) over the prefix. Keeps the window plus the top B - window.

    Source: Li et al., "SnapKV: LLM Knows What You are Looking for Before
    Generation", NeurIPS 2024 (arXiv:2404.14469); window 32 and max pooling
    with kernel 7 are its LongBench setting.

    Attributes:
        window: Observation window length w.
        kernel_size: Pooling kernel over positions (odd).
    """

    name = "snapkv"
    window: int = 32
    kernel_size: int = 7

    def min_budget(self) -> int:
        return self.window

    def score(self, view: LayerView) -> torch.Tensor:
        n = view.num_tokens
        if n <= self.window:
            return torch.full((view.num_kv_heads, n), FORCED, device=view.keys.device)
        window = self.window
        positions = torch.arange(n - window, n, device=view.keys.device)  # (w,)

        # Per query head: window attention summed, then pooled over the prefix only, as SnapKV does,
        # so window scores never spill into it. Grouped query heads are then averaged.
        scores = []
        for kv_head in range(view.num_kv_heads):
            attention = view.head_attention_rows(kv_head, positions)  # (g, window, n)
            prefix = attention[:, :, : n - window].sum(dim=1)  # (g, n - window)
            pooled = F.max_pool1d(
                prefix.unsqueeze(1), kernel_size=self.kernel_size, stride=1, padding=self.kernel_size // 2
            ).squeeze(1)  # (g, n - window)
            scores.append(pooled.mean(dim=0))  # (n - window,)
        scores = torch.stack(scores)  # (kv_heads, n - window)

        return torch.cat([scores, torch.full_like(scores[:, :window], FORCED)], dim=1)  # (kv_heads, n)
