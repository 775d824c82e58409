"""The contract shared by every KV cache compression method.

A method scores every (layer, KV head, prompt position) from what the single
prefill captured; higher means keep, and +inf marks positions the method always
keeps (sinks, observation window). ``select`` then keeps the ``budget``
highest-scoring positions of each KV head and ``prune`` builds the cache.

Budget B is the number of KV entries kept per layer and per KV head, counting
sink tokens and the observation window. A budget is either absolute or a ratio
r of the prompt, converted per prompt as B = round(r n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from pipeline.model.prefill import Prefill

FORCED = math.inf

# Attention rows per block are chosen so that one block contains about this
# many float32 values (16 MiB). Blocks shrink as prompts grow, so memory stays
# flat beyond 4096 tokens with 3 heads per group, and they stay large enough to be fast.
BLOCK_ELEMENTS = 2**22
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 16, 256


def block_rows(num_tokens: int, num_heads: int) -> int:
    """Rows per block of attention rows for ``num_heads`` heads over ``num_tokens`` keys."""
    return max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, BLOCK_ELEMENTS // max(num_heads * num_tokens, 1)))


class BudgetError(ValueError):
    """A budget that a method cannot honour."""


@dataclass
class LayerView:
    """The tensors of one layer's prefill that a scorer reads.

    Attributes:
        layer: Layer index.
        num_layers: Number of layers in the model.
        queries: Post-RoPE queries, shape (num_heads, n, head_dim).
        keys: Post-RoPE keys, shape (num_kv_heads, n, head_dim).
        scaling: Attention logit scale.
        generator: Random generator for stochastic scorers, on the tensors' device.
    """

    layer: int
    num_layers: int
    queries: torch.Tensor
    keys: torch.Tensor
    scaling: float
    generator: torch.Generator

    @property
    def num_tokens(self) -> int:
        return int(self.keys.shape[1])

    @property
    def num_kv_heads(self) -> int:
        return int(self.keys.shape[0])

    @property
    def group_size(self) -> int:
        """Query heads that share one KV head (grouped-query attention)."""
        return int(self.queries.shape[0]) // self.num_kv_heads

    def group_queries(self, kv_head: int) -> torch.Tensor:
        """Queries of the heads that read ``kv_head``, shape (group_size, n, head_dim)."""
        start = kv_head * self.group_size
        return self.queries[start : start + self.group_size]

    def head_attention_rows(self, kv_head: int, positions: torch.Tensor) -> torch.Tensor:
        """Causal attention rows of ``positions`` for each query head that reads ``kv_head``.

        Row i is softmax(q_i K^T * scaling) over keys 0..i and zero after i.
        Only keys up to the largest requested position are read.

        Args:
            kv_head: KV head index.
            positions: Query positions, shape (m,).

        Returns:
            Attention probabilities, shape (group_size, m, max(positions) + 1).
        """
        width = int(positions.max()) + 1
        queries = self.group_queries(kv_head)[:, positions]  # (g, m, d)
        keys = self.keys[kv_head, :width]  # (w, d)
        logits = torch.matmul(queries, keys.T).float().mul_(self.scaling)  # (g, m, w)
        columns = torch.arange(width, device=logits.device)
        future = columns.unsqueeze(0) > positions.unsqueeze(1)  # (m, w)
        # In place, so that a block of rows holds two (g, m, w) tensors at most.
        logits.masked_fill_(future.unsqueeze(0), -math.inf)
        return torch.softmax(logits, dim=-1)  # (g, m, w)

    def attention_rows(self, kv_head: int, positions: torch.Tensor) -> torch.Tensor:
        """Causal attention rows of ``positions`` averaged over the query heads of ``kv_head``.

        Returns:
            Attention probabilities, shape (m, max(positions) + 1).
        """
        return self.head_attention_rows(kv_head, positions).mean(dim=0)


@dataclass(frozen=True)
class LayerBudgets:
    """The KV entries each layer keeps for one prompt.

    Attributes:
        lengths: Entries kept per layer and KV head.
        fallback: Why a method's own schedule was replaced by a flat one, or None.
    """

    lengths: list[int]
    fallback: str | None = None


class Method:
    """Base class of compression methods: subclasses are dataclasses with hyperparameters."""

    name: ClassVar[str]
    compresses: ClassVar[bool] = True
    # The spec it was built from, e.g. ``circuitkv+temperature=0.5``; set by ``build_method``.
    label: ClassVar[str | None] = None

    @property
    def stochastic(self) -> bool:
        """Whether the scores depend on the random seed."""
        return False

    def min_budget(self) -> int:
        """Smallest budget the method accepts: the number of positions it always keeps."""
        return 1

    def layer_budgets(self, budget: int, num_layers: int, num_tokens: int) -> LayerBudgets:
        """Entries kept per layer for a prompt of ``num_tokens``; flat unless a method overrides it."""
        return LayerBudgets([budget] * num_layers)

    def keep(self, scores: torch.Tensor, budget: int) -> torch.Tensor:
        """Kept positions of one layer, shape (num_kv_heads, budget), from its scores (num_kv_heads, n)."""
        return top_positions(scores, budget)

    def score(self, view: LayerView) -> torch.Tensor:
        """Return keep-scores of shape (num_kv_heads, n); +inf marks always-kept positions."""
        raise NotImplementedError

    def params(self) -> dict:
        """Hyperparameters as recorded in the results."""
        from dataclasses import asdict, is_dataclass

        return asdict(self) if is_dataclass(self) else {}


def check_budget(method: Method, budget: object) -> int:
    """Validate a budget for ``method`` and return it as an int."""
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise BudgetError(f"Budget {budget!r} is not an integer number of KV entries per layer and KV head.")
    if budget <= 0:
        raise BudgetError(f"Budget {budget} must be positive.")
    if budget < method.min_budget():
        raise BudgetError(
            f"Budget {budget} is smaller than the {method.min_budget()} positions that {method.name} always keeps "
            "(sink tokens plus observation window); use a larger budget."
        )
    return budget


def check_ratio(ratio: object) -> float:
    """Validate a budget ratio: a number in (0, 1]."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        raise BudgetError(f"Budget ratio {ratio!r} is not a number; pass a fraction of the prompt such as 0.1.")
    if not 0 < ratio <= 1:
        raise BudgetError(f"Budget ratio {ratio} is outside (0, 1]; pass a fraction of the prompt such as 0.1.")
    return float(ratio)


def ratio_budget(method: Method, ratio: float, num_tokens: int) -> int:
    """Convert a budget ratio to entries for a prompt of ``num_tokens``: B = round(r n)."""
    budget = round(ratio * num_tokens)
    if budget < method.min_budget():
        raise BudgetError(
            f"Budget ratio {ratio} gives {budget} entries for a {num_tokens}-token prompt, fewer than the "
            f"{method.min_budget()} positions that {method.name} always keeps; use a larger ratio or longer prompts."
        )
    return budget


def top_positions(scores: torch.Tensor, budget: int) -> torch.Tensor:
    """Keep the ``budget`` highest scores per KV head, in position order.

    Args:
        scores: Keep-scores, shape (num_kv_heads, n).

    Returns:
        Sorted kept positions, shape (num_kv_heads, budget).
    """
    kept = torch.topk(scores, budget, dim=-1).indices  # (kv_heads, budget)
    return torch.sort(kept, dim=-1).values


def score_layers(method: Method, prefill: Prefill, seed: int = 0) -> list[torch.Tensor]:
    """Score every layer of ``prefill``; scores do not depend on the budget.

    Returns:
        Per layer, keep-scores of shape (num_kv_heads, n).
    """
    generator = torch.Generator(device=prefill.input_ids.device)
    generator.manual_seed(seed)

    scores = []
    for layer in range(prefill.num_layers):
        view = LayerView(
            layer=layer,
            num_layers=prefill.num_layers,
            queries=prefill.queries[layer],
            keys=prefill.keys(layer),
            scaling=prefill.scaling,
            generator=generator,
        )
        scores.append(method.score(view))  # (kv_heads, n)
    return scores


def keep_positions(method: Method, scores: list[torch.Tensor], budget: int) -> list[torch.Tensor]:
    """Turn per-layer scores into the kept positions under ``budget``.

    Returns:
        Per layer, sorted kept positions of shape (num_kv_heads, budget_l).
    """
    budgets = method.layer_budgets(budget, len(scores), int(scores[0].shape[-1])).lengths
    return [method.keep(layer_scores, layer_budget) for layer_scores, layer_budget in zip(scores, budgets)]


def select(method: Method, prefill: Prefill, budget: int, seed: int = 0) -> list[torch.Tensor]:
    """Score ``prefill`` and return the kept positions per layer under ``budget``."""
    return keep_positions(method, score_layers(method, prefill, seed), budget)
