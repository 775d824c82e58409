"""H2O and PyramidKV: dense references, budget schedules and pruned caches on a tiny random Llama."""

import math

import pytest
import torch

from pipeline.methods import build_method, select
from pipeline.methods.base import LayerView
from pipeline.model.prefill import cache_lengths, compress_cache, prefill

N = 300


@pytest.fixture(scope="module")
def full_prefill(tiny_llama):
    torch.manual_seed(2)
    return prefill(tiny_llama, torch.randint(3, 128, (1, N)))


def dense_column_sums(full_prefill, layer: int, kv_head: int) -> torch.Tensor:
    queries = full_prefill.queries[layer][2 * kv_head : 2 * kv_head + 2]  # (2, n, d)
    logits = queries @ full_prefill.keys(layer)[kv_head].T * full_prefill.scaling  # (2, n, n)
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    attention = torch.softmax(logits.masked_fill(~causal, -math.inf), dim=-1).mean(0)  # (n, n)
    return attention.sum(0)  # (n,)


def test_h2o_streamed_sums_equal_dense(full_prefill):
    # N = 300 spans two query blocks of 256 rows.
    view = LayerView(1, 2, full_prefill.queries[1], full_prefill.keys(1), full_prefill.scaling, torch.Generator())
    scores = build_method("h2o").score(view)
    for kv_head in range(2):
        assert torch.allclose(scores[kv_head], dense_column_sums(full_prefill, 1, kv_head), atol=1e-4)


def test_h2o_keeps_recent_half_and_heavy_hitters(full_prefill):
    budget = 41
    kept = select(build_method("h2o"), full_prefill, budget)
    for layer in range(2):
        for kv_head in range(2):
            positions = kept[layer][kv_head].tolist()
            assert len(positions) == budget
            assert positions[-20:] == list(range(N - 20, N))
            heavy = dense_column_sums(full_prefill, layer, kv_head)[: N - 20]
            expected = sorted(torch.topk(heavy, budget - 20).values.tolist())
            assert sorted(heavy[positions[:-20]].tolist()) == pytest.approx(expected, abs=1e-4)


def test_pyramidkv_budgets_follow_schedule():
    method = build_method("pyramidkv")
    budgets = method.layer_budgets(512, 30, 4096).lengths
    assert sum(budgets) == 30 * 512
    selected = 512 - 32
    low, high = selected / 20, 2 * selected - selected / 20
    ideal = [32 + high - (high - low) * layer / 29 for layer in range(30)]
    assert all(abs(budget - value) < 1 for budget, value in zip(budgets, ideal))
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] == 32 + round(high) or budgets[0] == 32 + math.floor(high)


def test_pyramidkv_falls_back_to_flat_when_infeasible():
    method = build_method("pyramidkv")
    assert method.layer_budgets(40, 30, 4096).lengths == [40] * 30  # the top layer would select no token
    assert method.layer_budgets(512, 30, 600).lengths == [512] * 30  # the bottom layer would exceed the prompt


def test_pyramidkv_cache_lengths_match_schedule(full_prefill):
    method = build_method("pyramidkv")
    kept = select(method, full_prefill, 100)
    expected = method.layer_budgets(100, 2, N).lengths
    assert expected != [100, 100]
    assert sum(expected) == 200
    assert cache_lengths(compress_cache(full_prefill, kept)) == expected


def test_h2o_cache_has_budget_length(full_prefill):
    kept = select(build_method("h2o"), full_prefill, 64)
    assert cache_lengths(compress_cache(full_prefill, kept)) == [64, 64]


def test_pyramidkv_cache_decodes(tiny_llama, full_prefill):
    """Layers of different lengths decode: each layer attends over its own entries."""
    from pipeline.model.prefill import greedy_decode

    kept = select(build_method("pyramidkv"), full_prefill, 100)
    tokens, _ = greedy_decode(tiny_llama, compress_cache(full_prefill, kept), full_prefill.first_token, N, 5, set())
    assert len(tokens) == 5
