"""StreamingLLM: attention sinks plus a recent window."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.methods.base import FORCED, LayerView, Method


@dataclass
class StreamingLLM(Method):
    """Keep the first ``num_sinks`` tokens and the B - num_sinks most recent ones.

    Source: Xiao et al., "Efficient Streaming Language Models with Attention
    Sinks", ICLR 2024 (arXiv:2309.17453).

    Attributes:
        num_sinks: Initial tokens always kept (4 in the paper).
    """

    name = "streamingllm"
    num_sinks: int = 4

    def min_budget(self) -> int:
        return self.num_sinks

    def score(self, view: LayerView) -> torch.Tensor:
        # Recency as the score: later positions rank higher; sinks are forced.
        scores = torch.arange(view.num_tokens, dtype=torch.float32, device=view.keys.device)  # (n,)
        scores[: self.num_sinks] = FORCED
        return scores.expand(view.num_kv_heads, -1).clone()  # (kv_heads, n)
