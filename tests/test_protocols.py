"""Both protocols, budget ratios, batched decoding and the compression checks, on a tiny random Llama."""

import argparse
from pathlib import Path

import pytest
import torch

from pipeline.__main__ import _protocols, _ratios
from pipeline.benchmarks.sample import Sample
from pipeline.experiments.aggregate import merged_name
from pipeline.experiments.evaluation import Cell, EncodedPrompt, PromptRun, _check_compressed
from pipeline.experiments.runner import GridConfig, validate
from pipeline.experiments.schema import CellConfig, ModelInfo
from pipeline.methods import BudgetError, LayerBudgets, build_method, check_ratio, ratio_budget, select
from pipeline.model.prefill import (
    cache_lengths,
    clone_cache,
    compress_cache,
    feed_tokens,
    greedy_decode,
    greedy_decode_batch,
    prefill,
    stack_caches,
)

N = 260
QUESTION = 12
MODEL_INFO = ModelInfo(
    model_id="tiny", model_type="llama", num_layers=2, num_kv_heads=2, head_dim=16, dtype="float32",
    bytes_per_element=4, device="cpu",
)


@pytest.fixture(scope="module")
def prompt_ids():
    torch.manual_seed(3)
    return torch.randint(3, 128, (1, N))


@pytest.fixture(scope="module")
def full_prefill(tiny_llama, prompt_ids):
    return prefill(tiny_llama, prompt_ids)


class DigitTokenizer:
    """Decodes token ids as space-separated numbers and encodes each digit as one token id (3-12)."""

    eos_token_id = 2

    def decode(self, tokens, skip_special_tokens=True):
        return " ".join(str(token) for token in tokens)

    def encode(self, text, add_special_tokens=False):
        return [3 + int(character) for character in text if character.isdigit()]


def make_cells(protocol: str, methods=("full", "streamingllm", "snapkv", "pyramidkv"), budgets=(64, 100)):
    cells = []
    for name in methods:
        method = build_method(name)
        for budget in (budgets if method.compresses else [None]):
            config = CellConfig(
                task="niah_single_1", benchmark="ruler", method=name, method_params=method.params(), budget=budget,
                protocol=protocol, num_samples=1, context_tokens=N, max_prompt_tokens=1024, seed=0,
            )
            cells.append(Cell(method, config, path=None))
    return cells


def run_cells(tiny_llama, prompt_ids, protocol, cells, decode_batch=8):
    sample = Sample(
        task="niah_single_1", sample_id="s0", prompt="context question", question="question",
        references=("7",), metric="string_match_all", max_new_tokens=6,
    )
    context_tokens = N - QUESTION if protocol == "context" else None
    prompt = EncodedPrompt(prompt_ids, truncated=False, context_tokens=context_tokens)
    runner = PromptRun(tiny_llama, DigitTokenizer(), set(), MODEL_INFO, seed=0, decode_batch=decode_batch)
    runner.run(sample, prompt, protocol, cells)
    return {(cell.config.method, cell.config.budget): cell.samples[0] for cell in cells}


def test_question_fed_through_the_full_cache_matches_one_prefill(tiny_llama, prompt_ids, full_prefill):
    context = prefill(tiny_llama, prompt_ids[:, : N - QUESTION])
    cache = clone_cache(context.cache)
    first = feed_tokens(tiny_llama, cache, prompt_ids[0, N - QUESTION :], N - QUESTION)
    assert first.tolist() == [full_prefill.first_token]
    for layer in range(2):
        assert torch.allclose(cache.layers[layer].keys, full_prefill.cache.layers[layer].keys, atol=1e-5)


def test_question_at_once_equals_token_by_token_on_uneven_layers(tiny_llama, prompt_ids):
    """PyramidKV layers hold different lengths: a multi-token feed must mask each layer by its own length."""
    context = prefill(tiny_llama, prompt_ids[:, : N - QUESTION])
    kept = select(build_method("pyramidkv"), context, 100)
    question = prompt_ids[0, N - QUESTION :]

    at_once = compress_cache(context, kept)
    assert len(set(cache_lengths(at_once))) == 2
    first_at_once = feed_tokens(tiny_llama, at_once, question, N - QUESTION)

    one_by_one = compress_cache(context, kept)
    for offset in range(QUESTION):
        first_one_by_one = feed_tokens(tiny_llama, one_by_one, question[offset : offset + 1], N - QUESTION + offset)
    assert first_at_once.tolist() == first_one_by_one.tolist()
    for layer in range(2):
        assert torch.allclose(at_once.layers[layer].keys, one_by_one.layers[layer].keys, atol=1e-5)


def test_batched_decode_equals_separate_decodes(tiny_llama, full_prefill):
    caches = [compress_cache(full_prefill, select(build_method(name), full_prefill, 64)) for name in
              ("streamingllm", "snapkv", "h2o")]
    separate = [
        greedy_decode(tiny_llama, clone_cache(cache), full_prefill.first_token, N, 8, set())[0] for cache in caches
    ]
    batched, _ = greedy_decode_batch(tiny_llama, stack_caches(caches), [full_prefill.first_token] * 3, N, 8, set())
    assert batched == separate


def test_batched_decode_cuts_each_row_at_its_stop(tiny_llama, full_prefill):
    cache = stack_caches([clone_cache(full_prefill.cache)] * 2)
    outputs, _ = greedy_decode_batch(tiny_llama, cache, [5, 9], N, 4, stop_token_ids={9})
    assert outputs[1] == []
    assert len(outputs[0]) == 4


def test_stack_rejects_caches_of_different_shapes(full_prefill):
    small = compress_cache(full_prefill, select(build_method("snapkv"), full_prefill, 64))
    large = compress_cache(full_prefill, select(build_method("snapkv"), full_prefill, 100))
    with pytest.raises(ValueError, match="equal per-layer lengths"):
        stack_caches([small, large])


@pytest.mark.parametrize("protocol", ["prompt", "context"])
def test_prompt_run_records_schedules_bytes_and_batches(tiny_llama, prompt_ids, protocol):
    results = run_cells(tiny_llama, prompt_ids, protocol, make_cells(protocol))
    n = N if protocol == "prompt" else N - QUESTION
    entry_bytes = 2 * 2 * 16 * 4

    full = results[("full", None)]
    assert not full.compressed
    assert full.cache_lengths == [n, n]
    assert full.context_tokens == n
    assert full.prompt_tokens == N
    assert full.kv_bytes == full.full_kv_bytes == entry_bytes * 2 * n

    for (method, budget), sample in results.items():
        if method == "full":
            continue
        assert sample.compressed
        assert sample.cache_lengths == sample.layer_budgets
        assert sample.kv_bytes == entry_bytes * sum(sample.cache_lengths) < sample.full_kv_bytes
    assert results[("pyramidkv", 100)].cache_lengths != [100, 100]
    # StreamingLLM and SnapKV at one budget have equal shapes and decode as one batch.
    assert results[("snapkv", 64)].timing.decode_batch == 2
    assert results[("pyramidkv", 64)].timing.decode_batch == 1


def test_context_protocol_with_full_cache_answers_like_prompt_protocol(tiny_llama, prompt_ids):
    prompt = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt", methods=("full",)))
    context = run_cells(tiny_llama, prompt_ids, "context", make_cells("context", methods=("full",)))
    assert prompt[("full", None)].prediction == context[("full", None)].prediction


def test_decode_batch_size_does_not_change_predictions(tiny_llama, prompt_ids):
    batched = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt"), decode_batch=8)
    single = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt"), decode_batch=1)
    assert {key: s.prediction for key, s in batched.items()} == {key: s.prediction for key, s in single.items()}
    assert all(sample.timing.decode_batch == 1 for sample in single.values())


def test_prompt_within_budget_is_kept_whole_and_flagged(tiny_llama, prompt_ids):
    results = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt", methods=("snapkv",), budgets=(N,)))
    sample = results[("snapkv", N)]
    assert not sample.compressed
    assert sample.budget == N
    assert sample.layer_budgets is None
    assert sample.cache_lengths == [N, N]


def test_pyramidkv_fallback_is_recorded(tiny_llama, prompt_ids):
    # At B = 40 the top layer would select no token beyond the 32-token window.
    results = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt", methods=("pyramidkv",), budgets=(40,)))
    sample = results[("pyramidkv", 40)]
    assert sample.cache_lengths == [40, 40]
    assert "flat budget" in sample.budget_fallback


def test_uncompressed_cache_under_a_method_name_fails_loudly():
    with pytest.raises(RuntimeError, match="expected the schedule"):
        _check_compressed("snapkv", 64, 200, [200, 200], LayerBudgets([64, 64]))
    with pytest.raises(RuntimeError, match="uncompressed"):
        _check_compressed("snapkv", 200, 200, [200, 200], LayerBudgets([200, 200]))


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), "0.1", True])
def test_invalid_ratios_rejected(ratio):
    with pytest.raises(BudgetError, match="ratio"):
        check_ratio(ratio)


def test_ratio_converts_per_prompt():
    snapkv = build_method("snapkv")
    assert ratio_budget(snapkv, 0.1, 4096) == 410
    assert ratio_budget(snapkv, 1.0, 700) == 700
    with pytest.raises(BudgetError, match="gives 20 entries for a 200-token prompt"):
        ratio_budget(snapkv, 0.1, 200)


def test_cli_rejects_bad_ratios_and_protocols():
    assert _ratios("0.1, 0.25") == [0.1, 0.25]
    with pytest.raises(argparse.ArgumentTypeError, match="outside"):
        _ratios("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        _ratios("tenth")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown protocol 'question'"):
        _protocols("prompt,question")


def test_grid_validation_checks_protocols_and_ratios():
    with pytest.raises(ValueError, match="Unknown protocol"):
        validate(GridConfig(tasks=["niah_single_1"], protocols=["both"]))
    with pytest.raises(BudgetError, match="outside"):
        validate(GridConfig(tasks=["niah_single_1"], budgets=[], budget_ratios=[2.0]))
    with pytest.raises(ValueError, match="No budgets given"):
        validate(GridConfig(tasks=["niah_single_1"], budgets=[]))
    validate(GridConfig(tasks=["niah_single_1"], budgets=[], budget_ratios=[0.2]))


def test_method_seeds_plan_one_cell_per_seed_for_stochastic_methods(tmp_path):
    from pipeline.experiments.runner import plan_cells

    config = GridConfig(tasks=["niah_single_1"], methods=["snapkv", "circuitkv", "circuitkv-exact"],
                        budgets=[128], method_seeds=[0, 1, 2], results_dir=tmp_path)
    names = sorted(Path(merged_name(cell)).name for cell in plan_cells("niah_single_1", "ruler", config))
    assert names == [
        "ctx4096-prompt-circuitkv-b128-s1.json", "ctx4096-prompt-circuitkv-b128-s2.json",
        "ctx4096-prompt-circuitkv-b128.json", "ctx4096-prompt-circuitkv-exact-b128.json",
        "ctx4096-prompt-snapkv-b128.json",
    ]


def test_method_specs_name_their_cells(tmp_path):
    from pipeline.experiments.runner import plan_cells

    config = GridConfig(tasks=["niah_single_1"], methods=["circuitkv+temperature=0.5+max_steps=inf"],
                        budgets=[128], results_dir=tmp_path)
    [cell] = plan_cells("niah_single_1", "ruler", config)
    assert Path(merged_name(cell)).name == "ctx4096-prompt-circuitkv+max_steps=inf+temperature=0.5-b128.json"
    assert cell.method_params["temperature"] == 0.5
    assert cell.method_params["max_steps"] is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("circuitkv+temp=2", "has no hyperparameter 'temp'"),
        ("circuitkv+temperature=hot", "'hot' is not a valid float"),
        ("circuitkv+exact=yes", "'yes' is not a valid bool"),
        ("circuitkv+window", "expected KEY=VALUE"),
        ("snapkv+window=inf", "'inf' is not a valid int"),
    ],
)
def test_bad_method_specs_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        build_method(spec)


def test_agreement_with_the_full_cache_is_recorded(tiny_llama, prompt_ids):
    results = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt"))
    full = results[("full", None)]
    assert full.agreement_tokens == full.generated_tokens
    for (method, budget), sample in results.items():
        assert 0 <= sample.agreement_tokens <= sample.generated_tokens
    # Without the full cache in the run there is nothing to compare with.
    alone = run_cells(tiny_llama, prompt_ids, "prompt", make_cells("prompt", methods=("snapkv",)))
    assert alone[("snapkv", 64)].agreement_tokens is None


def test_common_prefix_counts_leading_equal_tokens():
    from pipeline.experiments.evaluation import common_prefix

    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5, 6], [5, 6, 7]) == 2


def test_answer_nll_is_recorded_and_matches_a_direct_computation(tiny_llama, prompt_ids, full_prefill):
    from pipeline.model.prefill import answer_nll

    answer = torch.tensor([7, 8, 9])
    # The teacher-forced NLL from the cache equals the NLL of one forward pass over prompt + answer.
    with torch.no_grad():
        logits = tiny_llama(torch.cat([prompt_ids, answer[:-1].unsqueeze(0)], dim=1)).logits[0, -3:]  # (3, vocab)
    expected = -logits.float().log_softmax(-1).gather(-1, answer.unsqueeze(-1)).mean()
    result = answer_nll(tiny_llama, clone_cache(full_prefill.cache), full_prefill.last_logprobs.unsqueeze(0), answer, N)
    assert result.shape == (1,)
    assert float(result[0]) == pytest.approx(float(expected), abs=1e-4)


def test_runner_records_answer_nll_for_every_sample(tiny_llama, prompt_ids):
    sample = Sample(
        task="niah_single_1", sample_id="s0", prompt="context question", question="question",
        references=("7",), metric="string_match_all", max_new_tokens=4,
    )
    cells = make_cells("prompt")
    runner = PromptRun(tiny_llama, DigitTokenizer(), set(), MODEL_INFO, seed=0, decode_batch=8)
    runner.run(sample, EncodedPrompt(prompt_ids, truncated=False), "prompt", cells)
    values = [cell.samples[0].answer_nll for cell in cells]
    assert all(value is not None and value > 0 for value in values)
    # A one-token answer is scored by the full prefill's last position, the same for every method.
    assert max(values) - min(values) < 1e-6

    longer = Sample(
        task="niah_single_1", sample_id="s1", prompt="context question", question="question",
        references=("7890",), metric="string_match_all", max_new_tokens=4,
    )
    cells = make_cells("prompt")
    runner.run(longer, EncodedPrompt(prompt_ids, truncated=False), "prompt", cells)
    values = {cell.config.method: cell.samples[0].answer_nll for cell in cells if cell.config.budget in (None, 64)}
    assert len({round(value, 6) for value in values.values()}) > 1  # later tokens see different caches
