"""Scorers on hand-made attention matrices whose kept positions are worked out by hand."""

import math

import torch

from pipeline.methods import build_method
from pipeline.methods.base import LayerView

ABSENT = -1e4  # a logit whose softmax weight is zero in float32


def view_from_attention(attention: torch.Tensor, num_kv_heads: int = 1) -> LayerView:
    """A layer whose causal attention is exactly ``attention``.

    With identity keys and scaling 1, the logits of row i are its query, so
    queries set to log A give softmax(log A[i]) = A[i] for row-stochastic rows.

    Args:
        attention: Lower-triangular rows that sum to 1, shape (num_heads, n, n).
    """
    num_heads, n, _ = attention.shape
    queries = torch.where(attention > 0, attention.clamp_min(1e-30).log(), torch.full_like(attention, ABSENT))
    keys = torch.eye(n).expand(num_kv_heads, n, n).clone()  # (kv_heads, n, n): head_dim = n
    generator = torch.Generator()
    generator.manual_seed(0)
    return LayerView(0, 1, queries, keys, 1.0, generator)


def rows(*values: list[float]) -> torch.Tensor:
    """Stack attention rows, padding each with zeros to a square matrix, shape (n, n)."""
    n = len(values)
    return torch.tensor([list(row) + [0.0] * (n - len(row)) for row in values])


def uniform_rows(n: int) -> torch.Tensor:
    return torch.ones(n, n).tril() / torch.arange(1, n + 1).unsqueeze(1)


def test_handmade_rows_are_reproduced_exactly():
    attention = uniform_rows(6).unsqueeze(0)
    view = view_from_attention(attention)
    assert torch.allclose(view.attention_rows(0, torch.arange(6)), attention[0], atol=1e-6)


def test_h2o_keeps_recent_half_and_largest_column_sums():
    # Column sums: 2.0, 2.3, 0.4, 0.8, 0.3, 0.2.
    attention = rows(
        [1.0],
        [0.5, 0.5],
        [0.1, 0.8, 0.1],
        [0.1, 0.7, 0.1, 0.1],
        [0.1, 0.1, 0.1, 0.6, 0.1],
        [0.2, 0.2, 0.1, 0.1, 0.2, 0.2],
    ).unsqueeze(0)
    h2o = build_method("h2o")
    scores = h2o.score(view_from_attention(attention))
    assert torch.allclose(scores[0], torch.tensor([2.0, 2.3, 0.4, 0.8, 0.3, 0.2]), atol=1e-5)
    assert h2o.keep(scores, 4).tolist() == [[0, 1, 4, 5]]  # recent {4, 5} + heavy {1, 0}
    assert h2o.keep(scores, 3).tolist() == [[0, 1, 5]]  # recent {5} + heavy {1, 0}


def window_rows(n: int, row_8: dict, row_9: dict) -> torch.Tensor:
    """Uniform rows, except rows 8 and 9, which put the given weights on positions and share the rest."""
    attention = uniform_rows(n)
    for index, weights in ((8, row_8), (9, row_9)):
        rest = [j for j in range(index + 1) if j not in weights]
        share = (1 - sum(weights.values())) / len(rest)
        attention[index, : index + 1] = share
        for position, weight in weights.items():
            attention[index, position] = weight
    return attention


def test_snapkv_pools_the_window_attention_before_selecting():
    # The window (rows 8, 9) puts 1.1 in total on position 3 and 0.4 on position 6, little elsewhere.
    # Pooling with kernel 3 spreads 1.1 to positions 2-4, which then beat position 6.
    attention = window_rows(10, {3: 0.6, 6: 0.1}, {3: 0.5, 6: 0.3}).unsqueeze(0)
    snapkv = build_method("snapkv", window=2, kernel_size=3)
    scores = snapkv.score(view_from_attention(attention))
    assert snapkv.keep(scores, 5).tolist() == [[2, 3, 4, 8, 9]]
    assert math.isclose(float(scores[0, 5]), 0.4, abs_tol=1e-5)  # pooled from position 6


def test_snapkv_pools_each_query_head_then_averages_the_group():
    # Head 0 as above; head 1 looks only at position 6. Pooled per head then averaged:
    # positions 2-4 score (1.1 + 0) / 2 = 0.55, positions 5-7 score (0.4 + 2.0) / 2 = 1.2.
    head_0 = window_rows(10, {3: 0.6, 6: 0.1}, {3: 0.5, 6: 0.3})
    head_1 = window_rows(10, {6: 1.0}, {6: 1.0})
    snapkv = build_method("snapkv", window=2, kernel_size=3)
    scores = snapkv.score(view_from_attention(torch.stack([head_0, head_1])))
    assert snapkv.keep(scores, 5).tolist() == [[5, 6, 7, 8, 9]]
    assert math.isclose(float(scores[0, 3]), 0.55, abs_tol=1e-5)
    assert math.isclose(float(scores[0, 6]), 1.2, abs_tol=1e-5)


def test_circuitkv_follows_the_only_path_to_the_query():
    # Position 7 attends only to 5, 5 only to 2, 2 only to 1 (the first non-sink token): every walker
    # visits 7, 5, 2 and 1. With s[j] = v[j] / sqrt(n - j), positions 5 and 2 outrank 1; the rest are never visited.
    n = 8
    attention = uniform_rows(n)
    for source, target in ((7, 5), (5, 2), (2, 1)):
        attention[source] = 0.0
        attention[source, target] = 1.0
    circuitkv = build_method("circuitkv", num_walkers=100, num_sinks=1, window=1)
    scores = circuitkv.score(view_from_attention(attention.unsqueeze(0)))
    finite = scores[0, 1:7]
    expected = torch.tensor([100 / math.sqrt(7), 100 / math.sqrt(6), 0, 0, 100 / math.sqrt(3), 0])
    assert torch.allclose(finite / finite.max(), expected / expected.max(), atol=1e-5)
    assert circuitkv.keep(scores, 4).tolist() == [[0, 2, 5, 7]]
