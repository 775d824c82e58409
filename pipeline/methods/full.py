"""Full cache: the uncompressed reference every method is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.methods.base import FORCED, LayerView, Method


@dataclass
class FullCache(Method):
    """Keep every KV entry of the prompt; the budget does not apply."""

    name = "full"
    compresses = False

    def score(self, view: LayerView) -> torch.Tensor:
        return torch.full((view.num_kv_heads, view.num_tokens), FORCED, device=view.keys.device)
