"""Methods through the shared interface on a tiny random Llama: budgets, kept positions, decoding."""

import math

import pytest
import torch

from pipeline.methods import BudgetError, build_method, check_budget, select
from pipeline.methods.base import LayerView, top_positions
from pipeline.model.prefill import cache_lengths, clone_cache, compress_cache, greedy_decode, prefill

N = 200


@pytest.fixture(scope="module")
def full_prefill(tiny_llama):
    torch.manual_seed(1)
    input_ids = torch.randint(3, 128, (1, N))
    return prefill(tiny_llama, input_ids)


def test_prefill_captures_queries_and_keys(full_prefill):
    assert full_prefill.num_layers == 2
    assert full_prefill.queries[0].shape == (4, N, 16)
    assert full_prefill.keys(0).shape == (2, N, 16)
    assert math.isclose(full_prefill.scaling, 16**-0.5)


def test_attention_rows_match_dense_softmax(full_prefill):
    view = LayerView(0, 2, full_prefill.queries[0], full_prefill.keys(0), full_prefill.scaling, torch.Generator())
    positions = torch.tensor([5, 50, N - 1])
    rows = view.attention_rows(1, positions)

    queries = full_prefill.queries[0][2:4]  # the two query heads of KV head 1
    logits = queries @ full_prefill.keys(0)[1].T * full_prefill.scaling  # (2, n, n)
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    dense = torch.softmax(logits.masked_fill(~causal, -math.inf), dim=-1).mean(0)  # (n, n)
    for index, position in enumerate(positions.tolist()):
        assert torch.allclose(rows[index, : position + 1], dense[position, : position + 1], atol=1e-6)


@pytest.mark.parametrize("name", ["streamingllm", "snapkv", "circuitkv"])
def test_compressed_cache_has_budget_length(full_prefill, name):
    budget = 64
    kept = select(build_method(name), full_prefill, budget)
    cache = compress_cache(full_prefill, kept)
    assert cache_lengths(cache) == [budget, budget]
    for positions in kept:
        assert positions.shape == (2, budget)
        assert torch.all(positions[:, 1:] > positions[:, :-1])  # sorted and distinct


def test_streamingllm_keeps_sinks_and_recent(full_prefill):
    kept = select(build_method("streamingllm"), full_prefill, 40)
    expected = list(range(4)) + list(range(N - 36, N))
    for positions in kept:
        for head in positions:
            assert head.tolist() == expected


def test_snapkv_and_circuitkv_keep_their_window(full_prefill):
    for name, forced in [("snapkv", range(N - 32, N)), ("circuitkv", [*range(4), *range(N - 32, N)])]:
        kept = select(build_method(name), full_prefill, 48)
        for positions in kept:
            for head in positions:
                assert set(forced) <= set(head.tolist()), name


def dense_snapkv_scores(full_prefill, layer: int, kv_head: int) -> torch.Tensor:
    """SnapKV's prefix scores computed from the dense window attention, shape (n - 32,)."""
    keys = full_prefill.keys(layer)
    queries = full_prefill.queries[layer][2 * kv_head : 2 * kv_head + 2, N - 32 :]  # (2, w, d)
    logits = queries @ keys[kv_head].T * full_prefill.scaling  # (2, w, n)
    causal = torch.arange(N).unsqueeze(0) <= torch.arange(N - 32, N).unsqueeze(1)
    attention = torch.softmax(logits.masked_fill(~causal, -math.inf), dim=-1).sum(1)  # (2, n)
    per_head = torch.nn.functional.max_pool1d(attention[:, None, : N - 32], 7, 1, 3)[:, 0]  # prefix only
    return per_head.mean(0)  # (n - 32,)


def assert_keeps_window_and_best(kept_positions: list[int], pooled: torch.Tensor, budget: int) -> None:
    assert kept_positions[-32:] == list(range(N - 32, N))
    # Max pooling makes ties, so compare the kept scores rather than tie-broken indices.
    kept_scores = sorted(pooled[kept_positions[:-32]].tolist())
    best_scores = sorted(torch.topk(pooled, budget - 32).values.tolist())
    assert kept_scores == best_scores


def test_snapkv_matches_dense_reference(full_prefill):
    budget = 60
    kept = select(build_method("snapkv"), full_prefill, budget)
    for layer in range(2):
        for kv_head in range(2):
            pooled = dense_snapkv_scores(full_prefill, layer, kv_head)
            assert_keeps_window_and_best(kept[layer][kv_head].tolist(), pooled, budget)


def test_pyramidkv_matches_dense_reference_per_layer(full_prefill):
    method = build_method("pyramidkv")
    budgets = method.layer_budgets(80, 2, N).lengths
    assert budgets[0] > 80 > budgets[1]
    kept = select(method, full_prefill, 80)
    for layer in range(2):
        for kv_head in range(2):
            pooled = dense_snapkv_scores(full_prefill, layer, kv_head)
            assert_keeps_window_and_best(kept[layer][kv_head].tolist(), pooled, budgets[layer])


def test_circuitkv_same_seed_same_selection(full_prefill):
    method = build_method("circuitkv", num_walkers=128)
    assert all(torch.equal(a, b) for a, b in zip(select(method, full_prefill, 50, seed=7),
                                                 select(method, full_prefill, 50, seed=7)))


def test_full_budget_decodes_like_full_cache(tiny_llama, full_prefill):
    stops = set()
    reference, _ = greedy_decode(tiny_llama, clone_cache(full_prefill.cache), full_prefill.first_token, N, 8, stops)
    for name in ["streamingllm", "snapkv", "circuitkv"]:
        kept = select(build_method(name), full_prefill, N)
        tokens, _ = greedy_decode(tiny_llama, compress_cache(full_prefill, kept), full_prefill.first_token, N, 8, stops)
        assert tokens == reference, name


def test_decoding_matches_generate(tiny_llama, full_prefill):
    tokens, _ = greedy_decode(tiny_llama, clone_cache(full_prefill.cache), full_prefill.first_token, N, 6, set())
    generated = tiny_llama.generate(
        full_prefill.input_ids, attention_mask=torch.ones_like(full_prefill.input_ids),
        max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0,
    )
    assert tokens == generated[0, N:].tolist()


def test_decode_positions_continue_from_prompt_length(tiny_llama, full_prefill):
    """After pruning to B entries, new tokens still take RoPE positions n, n+1, ... (not B)."""
    seen = []
    hook = tiny_llama.model.rotary_emb.register_forward_hook(lambda module, args, output: seen.append(args[1].tolist()))
    try:
        kept = select(build_method("streamingllm"), full_prefill, 40)
        greedy_decode(tiny_llama, compress_cache(full_prefill, kept), full_prefill.first_token, N, 4, set())
    finally:
        hook.remove()
    assert seen == [[[N]], [[N + 1]], [[N + 2]]]


def test_prefill_leaves_full_cache_intact_after_decoding(tiny_llama, full_prefill):
    before = cache_lengths(full_prefill.cache)
    greedy_decode(tiny_llama, clone_cache(full_prefill.cache), full_prefill.first_token, N, 4, set())
    assert cache_lengths(full_prefill.cache) == before


@pytest.mark.parametrize("budget", [0, -5, 3.5, "128", True])
def test_invalid_budgets_rejected(budget):
    with pytest.raises(BudgetError):
        check_budget(build_method("snapkv"), budget)


def test_budget_below_forced_positions_rejected():
    with pytest.raises(BudgetError, match="36 positions"):
        check_budget(build_method("circuitkv"), 30)
    assert check_budget(build_method("circuitkv"), 36) == 36


def test_unknown_method_lists_available():
    with pytest.raises(ValueError, match="available: full, streamingllm, h2o, snapkv, pyramidkv, circuitkv"):
        build_method("quantum")


def test_top_positions_sorted_and_forced_first():
    scores = torch.tensor([[math.inf, 0.1, 0.9, 0.5, math.inf]])
    assert top_positions(scores, 3).tolist() == [[0, 2, 4]]


def test_grid_validation_runs_before_model_load(tmp_path):
    from pipeline.experiments.runner import GridConfig, validate

    with pytest.raises(ValueError, match="Unknown task 'nosuchtask'"):
        validate(GridConfig(tasks=["nosuchtask"]))
    with pytest.raises(ValueError, match="set LONGBENCH_DIR"):
        validate(GridConfig(tasks=["multi_news"]))
    with pytest.raises(BudgetError, match="36 positions that circuitkv"):
        validate(GridConfig(tasks=["niah_single_1"], budgets=[20]))
