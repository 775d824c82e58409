"""Cells at scale: content keys, cache hits and misses, crashes, concurrent runners, worker processes and Ray.

The runs use a tiny random Llama saved with the default model's tokenizer, so
that a grid of a few prompts takes seconds; what the tests compare is where
and how cells are stored, not what the model answers.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from pipeline.experiments import aggregate, claims, status
from pipeline.experiments.cells import code_version, dependencies, normalized_source
from pipeline.experiments.runner import GridConfig, RunOptions, plan_grid, run_grid
from pipeline.experiments.schema import MERGED_DIR, MISSING_FILE, read_cell

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A checkpoint folder: a 2-layer random Llama with the default model's tokenizer and vocabulary."""
    from pipeline.model.loading import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def grid(model_dir: Path, results_dir: Path, **overrides) -> GridConfig:
    settings = dict(tasks=["niah_single_1"], methods=["full", "streamingllm", "snapkv"], budgets=[64],
                    num_samples=4, shard_size=2, context_lengths=[300], model=str(model_dir), device="cpu",
                    results_dir=results_dir)
    return GridConfig(**{**settings, **overrides})


def answers(results_dir: Path) -> dict:
    """Return what each cell computed, without times and provenance: key -> (prediction, score, NLL) per sample."""
    found = {}
    for path in sorted((results_dir / "cells").rglob("*.json")):
        cell = read_cell(path)
        found[path.relative_to(results_dir).as_posix()] = [
            (sample.sample_id, sample.prediction, sample.score, round(sample.answer_nll, 4), sample.cache_lengths)
            for sample in cell.samples
        ]
    return found


def test_second_run_hits_the_cache(tiny_model_dir, tmp_path):
    config = grid(tiny_model_dir, tmp_path)
    written = run_grid(config)
    assert len(written) == 2 * 3  # two shards of two samples, three methods
    assert all(path.stem == read_cell(path).config.key for path in written)
    stamps = {path: path.stat().st_mtime_ns for path in written}

    assert run_grid(config) == []
    assert {path: path.stat().st_mtime_ns for path in written} == stamps


def test_missing_and_corrupt_cells_are_recomputed(tiny_model_dir, tmp_path, caplog):
    config = grid(tiny_model_dir, tmp_path)
    written = run_grid(config)
    before = answers(tmp_path)
    written[0].unlink()
    written[1].write_text(written[1].read_text()[:100])  # a partial file, as from a disk that filled up

    again = run_grid(config)

    assert sorted(again) == sorted(written[:2])
    assert "Recomputing" in caplog.text and str(written[1]) in caplog.text
    assert answers(tmp_path) == before


def keys(config: GridConfig) -> dict[str, str]:
    """Return method -> key for the first shard of ``config``."""
    return {plan.method: plan.key for plan in plan_grid([config])[0].plans}


@pytest.mark.parametrize("change", [{"seed": 1}, {"context_lengths": [400]}, {"shard_size": 4}, {"num_samples": 6},
                                    {"model": "default"}])
def test_key_changes_with_every_coordinate(tiny_model_dir, tmp_path, change):
    base = keys(grid(tiny_model_dir, tmp_path))
    changed = keys(grid(tiny_model_dir, tmp_path, **change))
    assert set(base.values()).isdisjoint(changed.values())


def test_key_of_a_method_follows_its_configuration(tiny_model_dir, tmp_path):
    base = keys(grid(tiny_model_dir, tmp_path))
    other_budget = keys(grid(tiny_model_dir, tmp_path, budgets=[96]))
    assert other_budget["full"] == base["full"]  # the full cache has no budget
    assert other_budget["snapkv"] != base["snapkv"]
    wider = keys(grid(tiny_model_dir, tmp_path, methods=["snapkv+window=16"]))
    assert wider["snapkv+window=16"] != base["snapkv"]


def test_cells_sharing_prompts_form_one_group(tiny_model_dir, tmp_path):
    main = grid(tiny_model_dir, tmp_path)
    ablation = grid(tiny_model_dir, tmp_path, methods=["circuitkv", "circuitkv-exact"])
    groups = plan_grid([main, ablation])
    assert len(groups) == 2  # one per shard; the ablation's cells join the main grid's prompts
    assert all({plan.method for plan in group.plans} == {"full", "streamingllm", "snapkv", "circuitkv",
                                                         "circuitkv-exact"} for group in groups)


def test_code_version_follows_code_not_docs():
    source = "def f(x):\n    '''Return x.'''\n    return x  # the same\n"
    assert normalized_source(source) == normalized_source(source.replace("Return x.", "Give x back."))
    assert normalized_source(source) != normalized_source(source.replace("return x", "return x + 1"))
    walker_modules = dependencies(("pipeline.experiments.evaluation", "pipeline.benchmarks.ruler",
                                   "pipeline.methods.circuitkv"))
    assert "pipeline.methods.walkers" in walker_modules
    assert "pipeline.methods.h2o" not in walker_modules
    assert "pipeline.experiments.schema" not in walker_modules
    assert code_version("ruler", "pipeline.methods.circuitkv") != code_version("ruler", "pipeline.methods.h2o")


RUNNER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {repository!r})
    from pipeline.experiments.runner import GridConfig, RunOptions, run_grid
    import pipeline.atomic

    kill_at = int(os.environ.get("KILL_AT_WRITE", "0"))
    if kill_at:
        real_fsync = pipeline.atomic.os.fsync
        count = [0]

        def fsync_then_die(descriptor):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-write: the temporary file is written, not renamed
            real_fsync(descriptor)

        pipeline.atomic.os.fsync = fsync_then_die
    run_grid(GridConfig(tasks=["niah_single_1"], methods=["full", "streamingllm", "snapkv"], budgets=[64],
                        num_samples=6, shard_size=1, context_lengths=[300], model={model!r}, device="cpu",
                        results_dir=Path(sys.argv[1])), RunOptions(poll_s=0.5))
""")


def runner_script(tmp_path: Path, model_dir: Path) -> Path:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(repository=str(REPOSITORY), model=str(model_dir)))
    return script


def test_kill_mid_write_loses_nothing(tiny_model_dir, tmp_path):
    script = runner_script(tmp_path, tiny_model_dir)
    clean = subprocess.run([sys.executable, str(script), str(tmp_path / "clean")], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]

    crashed = tmp_path / "crashed"
    killed = subprocess.run([sys.executable, str(script), str(crashed)], capture_output=True, text=True,
                            env={**os.environ, "KILL_AT_WRITE": "8"})
    assert killed.returncode == -signal.SIGKILL
    visible = list((crashed / "cells").rglob("*.json"))
    assert 0 < len(visible) < 18
    assert all(read_cell(path).config.key == path.stem for path in visible)  # every visible file is whole
    assert list((crashed / "cells").rglob(".*.tmp"))  # the write it was killed in
    assert list((crashed / "claims").glob("*.json"))  # and the claim of the group it was running

    resumed = subprocess.run([sys.executable, str(script), str(crashed)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Taking over the stale claim" in resumed.stderr
    assert not list((crashed / "cells").rglob(".*.tmp"))
    assert not list((crashed / "claims").glob("*.json"))
    assert answers(crashed) == answers(tmp_path / "clean")


def test_two_concurrent_runners_share_the_folder(tiny_model_dir, tmp_path):
    script = runner_script(tmp_path, tiny_model_dir)
    shared = tmp_path / "shared"
    runners = [subprocess.Popen([sys.executable, str(script), str(shared)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [runner.communicate(timeout=600) for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0], [error[-2000:] for _, error in outputs]

    files = list((shared / "cells").rglob("*.json"))
    assert len(files) == 6 * 3
    assert all(read_cell(path).config.key == path.stem for path in files)
    assert not list((shared / "claims").glob("*.json"))
    alone = tmp_path / "alone"
    subprocess.run([sys.executable, str(script), str(alone)], check=True, capture_output=True)
    assert answers(shared) == answers(alone)


def test_worker_processes_write_the_same_cells(tiny_model_dir, tmp_path):
    run_grid(grid(tiny_model_dir, tmp_path / "inline"))
    run_grid(grid(tiny_model_dir, tmp_path / "jobs"), RunOptions(jobs=2))
    assert answers(tmp_path / "jobs") == answers(tmp_path / "inline")


@pytest.mark.slow
def test_local_ray_instance_writes_the_same_cells(tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    run_grid(grid(tiny_model_dir, tmp_path / "inline"))
    run_grid(grid(tiny_model_dir, tmp_path / "ray"), RunOptions(executor="ray"))  # starts and stops its own
    assert answers(tmp_path / "ray") == answers(tmp_path / "inline")


def test_aggregate_lists_missing_cells_unless_draft(tiny_model_dir, tmp_path):
    config = grid(tiny_model_dir, tmp_path)
    written = run_grid(config)
    groups = plan_grid([config])
    merged, holes = aggregate.merge(groups, tmp_path)
    assert len(merged) == 3 and holes == []
    whole = read_cell(tmp_path / MERGED_DIR / "niah_single_1" / "ctx300-prompt-snapkv-b64.json")
    assert [sample.sample_id.rsplit("-", 1)[1] for sample in whole.samples] == ["0", "1", "2", "3"]

    snapkv_shard = next(path for path in written if read_cell(path).config.method == "snapkv")
    snapkv_shard.unlink()
    with pytest.raises(aggregate.IncompleteResults, match=r"1 of the 3 merged results .*\n  niah_single_1 prompt snapkv"):
        aggregate.merge(groups, tmp_path)
    merged, holes = aggregate.merge(groups, tmp_path, draft=True)
    assert len(merged) == 2
    assert json.loads((tmp_path / MERGED_DIR / MISSING_FILE).read_text())[0]["method"] == "snapkv"
    assert not (tmp_path / MERGED_DIR / "niah_single_1" / "ctx300-prompt-snapkv-b64.json").exists()


def test_status_counts_done_running_failed_and_missing(tiny_model_dir, tmp_path):
    config = grid(tiny_model_dir, tmp_path)
    groups = plan_grid([config])
    run_grid(grid(tiny_model_dir, tmp_path, methods=["full"]))
    first, second = groups
    held = claims.try_claim(tmp_path, first.key, first.describe())
    claims.record_failure(tmp_path, second.key, second.describe(), RuntimeError("out of memory"))

    report = status.report(groups, tmp_path)

    assert report.splitlines()[1].split() == ["niah_single_1", "2", "2", "2", "0"]
    assert "failed: niah_single_1 at 300 tokens, samples 2-3: RuntimeError: out of memory" in report
    assert "running: niah_single_1 at 300 tokens, samples 0-1" in report
    held.release()


def test_claims_of_dead_processes_are_stale(tmp_path):
    claim = claims.try_claim(tmp_path, "group", "a group")
    assert claims.try_claim(tmp_path, "group", "a group") is None  # this live process holds it
    record = json.loads(claim.path.read_text())
    claim.path.write_text(json.dumps({**record, "pid": 2 ** 22 + 1}))  # above Linux's default pid_max
    assert claims.is_stale(claim.path)
    assert claims.try_claim(tmp_path, "group", "a group") is not None


def test_failing_group_is_recorded_and_the_others_finish(tiny_model_dir, tmp_path):
    from pipeline.experiments.runner import RunError

    # A budget of 1% of a ~300-token prompt is below SnapKV's window, so every group of this grid fails.
    failing = grid(tiny_model_dir, tmp_path, methods=["snapkv"], budgets=[], budget_ratios=[0.01])
    with pytest.raises(RunError, match=r"2 prompt groups failed .*failures.*\n  niah_single_1 at 300 tokens"):
        run_grid([grid(tiny_model_dir, tmp_path, methods=["full"], num_samples=4), failing])
    assert len(list((tmp_path / "failures").glob("*.json"))) == 2
    assert len(list((tmp_path / "cells").rglob("*.json"))) == 0  # the full cache shares the failing groups
    report = status.report(plan_grid([failing]), tmp_path)
    assert report.splitlines()[1].split() == ["niah_single_1", "0", "0", "2", "0"]
