"""Per-layer diagnostics of CircuitKV on a tiny random Llama and on hand-made scores."""

import math

import pytest
import torch

from pipeline.analysis.diagnostics import diagnose_layer, find_bridges, jaccard
from pipeline.methods import build_method
from pipeline.model.prefill import prefill

N = 160
CONTEXT = 140


@pytest.fixture(scope="module")
def full_prefill(tiny_llama):
    torch.manual_seed(5)
    return prefill(tiny_llama, torch.randint(3, 128, (1, N)))


def test_jaccard_of_position_sets():
    assert jaccard(torch.tensor([1, 2, 3]), torch.tensor([2, 3, 4])) == 0.5
    assert jaccard(torch.tensor([1]), torch.tensor([1])) == 1.0


def test_bridge_is_kept_by_walk_not_by_attention():
    inf = math.inf
    scores = torch.tensor([inf, 0.9, 0.8, 0.1, 0.05, inf])
    attention = torch.tensor([0.5, 0.01, 0.3, 0.1, 0.09, 0.0])
    [bridge] = find_bridges(scores, attention, budget=2)
    assert bridge.position == 1
    assert bridge.walk_rank == 0
    assert bridge.attention_rank == 3


def test_layer_diagnostics_are_consistent(full_prefill):
    circuit = build_method("circuitkv", num_walkers=256)
    result = diagnose_layer(full_prefill, 1, CONTEXT, budget=60, circuit=circuit)
    assert len(result.visits) == CONTEXT
    assert result.question_tokens == N - CONTEXT
    # Every walker starts at the last context token.
    assert result.visits[CONTEXT - 1] == pytest.approx(256.0)
    assert 0.0 <= result.near_sink_share <= 1.0
    assert set(result.jaccard) == {"snapkv", "h2o", "streamingllm"}
    assert all(0.0 <= value <= 1.0 for value in result.jaccard.values())
    assert all(0.0 < value <= 1.0 + 1e-6 for value in result.later_attention.values())
    assert len(result.bridges) == 2
    assert all(bridge.attention_rank >= 60 - 36 for head in result.bridges for bridge in head)


def test_whole_context_budget_keeps_all_later_attention(full_prefill):
    result = diagnose_layer(full_prefill, 0, CONTEXT, budget=CONTEXT, circuit=build_method("circuitkv-exact"))
    assert all(value == pytest.approx(1.0) for value in result.later_attention.values())
    assert all(value == 1.0 for value in result.jaccard.values())


def test_context_must_split_the_prompt(full_prefill):
    with pytest.raises(ValueError, match="must split the 160-token prompt"):
        diagnose_layer(full_prefill, 0, N, budget=60)
