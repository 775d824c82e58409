"""Shared fixtures: a tiny random Llama model that needs no download."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="session")
def tiny_llama():
    """A 2-layer Llama with grouped-query attention (4 query heads, 2 KV heads), random weights."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    return model


def _cell(task: str, method: str, budget, score: float, num_samples: int = 2) -> dict:
    """A valid cell result as written by the runner, with every sample scoring ``score``."""
    benchmark = "longbench" if task == "multi_news" else "ruler"
    params = {
        "full": {},
        "streamingllm": {"num_sinks": 4},
        "snapkv": {"window": 32, "kernel_size": 7},
        "circuitkv": {"num_walkers": 1024, "max_steps": 10, "temperature": 1.0, "num_sinks": 4, "window": 32},
    }[method]
    lengths = [budget or 4096] * 30
    entry_bytes = 2 * 3 * 64 * 4  # keys and values x KV heads x head dim x float32
    samples = [
        {
            "sample_id": f"{task}-s0-{index}",
            "prompt_tokens": 4096,
            "context_tokens": 4096,
            "truncated": False,
            "budget": budget,
            "compressed": budget is not None,
            "layer_budgets": lengths if budget is not None else None,
            "budget_fallback": None,
            "cache_lengths": lengths,
            "kv_bytes": entry_bytes * sum(lengths),
            "full_kv_bytes": entry_bytes * 30 * 4096,
            "generated_tokens": 9,
            "prediction": "1234567",
            "references": None if benchmark == "longbench" else ["1234567"],
            "score": score,
            "timing": {"prefill_s": 10.0, "scoring_s": 1.0, "decode_s": 0.5, "decode_batch": 1},
        }
        for index in range(num_samples)
    ]
    return {
        "schema_version": 2,
        "config": {
            "task": task, "benchmark": benchmark, "method": method, "method_params": params, "budget": budget,
            "protocol": "prompt", "num_samples": num_samples,
            "context_tokens": 4096 if benchmark == "ruler" else None, "max_prompt_tokens": 8192, "seed": 0,
        },
        "model": {
            "model_id": "test-model", "model_type": "llama", "num_layers": 30, "num_kv_heads": 3,
            "head_dim": 64, "dtype": "float32", "bytes_per_element": 4, "device": "cpu",
        },
        "samples": samples,
        "mean_score": score,
        "total_seconds": 23.0,
        "provenance": {
            "git_commit": "0" * 40, "git_dirty": False, "packages": {"torch": "2.13.0"}, "python": "3.11.7",
            "platform": "Linux", "device_name": "x86_64", "torch_threads": 2, "created": "2026-01-01T00:00:00+00:00",
        },
    }


@pytest.fixture
def write_results(tmp_path):
    """Write fixture result cells; ``scores`` maps (task, method, budget) to a mean score."""
    import json

    from pipeline.experiments.schema import cell_filename

    def write(scores: dict, directory=None):
        directory = directory or tmp_path / "results"
        for (task, method, budget), score in scores.items():
            path = directory / "merged" / cell_filename(task, method, budget)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_cell(task, method, budget, score)))
        return directory

    return write


def add_method_seed(directory, relative: str, seed: int, score: float):
    """Copy a cell file as the run of another method seed in which every sample scores ``score``."""
    import json

    base = directory / "merged" / relative
    data = json.loads(base.read_text())
    data["config"]["method_seed"] = seed
    for sample in data["samples"]:
        sample["score"] = score
    data["mean_score"] = score
    copy = base.with_name(f"{base.stem}-s{seed}.json")
    copy.write_text(json.dumps(data))
    return copy


def standard_scores(ours_128: float = 40.0, snap_128: float = 60.0) -> dict:
    """Two tasks, four methods, budgets 128 and 512."""
    scores = {}
    for task in ("niah_single_1", "niah_multikey_1"):
        scores[(task, "full", None)] = 90.0
        for budget, base in ((128, 0.0), (512, 20.0)):
            scores[(task, "streamingllm", budget)] = 10.0 + base
            scores[(task, "snapkv", budget)] = snap_128 + base
            scores[(task, "circuitkv", budget)] = ours_128 + base
    return scores


@pytest.fixture(scope="session")
def default_paper(tmp_path_factory):
    """The default paper, rendered from the committed results and built in a temporary folder.

    Tests of the real paper use it instead of ``paper/``, which a fresh clone
    has not built yet when ``make test`` runs.
    """
    import shutil
    from pathlib import Path

    from pipeline.render import build, paper

    if shutil.which("latexmk") is None:
        pytest.skip("latexmk not installed (run `make tex`)")
    repository = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("default-paper")
    paper.render(repository / "data/results", folder / "paper", folder / "figures")
    build.build(folder / "paper")
    return folder / "paper"
