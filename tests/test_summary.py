"""The results summary: per-cell intervals and paired differences between every two methods."""

import json

import pytest
from conftest import add_method_seed, standard_scores

from pipeline.experiments.schema import read_cell
from pipeline.stats.summary import main, summarize


def load(directory):
    paths = sorted((directory / "merged").rglob("*.json"))
    return [(path.relative_to(directory), read_cell(path)) for path in paths]


def test_known_difference_is_paired_against_circuitkv(write_results):
    directory = write_results(standard_scores(ours_128=40.0, snap_128=60.0))
    summary = summarize(load(directory))
    [snap] = [row for row in summary["paired"] if row["task"] == "niah_single_1" and row["method"] == "snapkv"
              and row["against"] == "circuitkv" and row["budget"] == 128]
    # Every prompt scores 60 with SnapKV and 40 with CircuitKV, so the difference is exactly 20.
    assert (snap["mean_difference"], snap["low"], snap["high"]) == (20.0, 20.0, 20.0)
    assert snap["excludes_zero"] and snap["share_positive"] == 1.0
    full = [row for row in summary["paired"] if row["task"] == "niah_single_1" and row["method"] == "full"
            and row["against"] == "circuitkv"]
    assert sorted(row["budget"] for row in full) == [128, 512]  # the full cache is compared at every budget


def test_every_two_methods_are_paired_once_per_budget(write_results):
    directory = write_results(standard_scores(ours_128=40.0, snap_128=60.0))
    paired = [row for row in summarize(load(directory))["paired"] if row["task"] == "niah_single_1"]
    # Four methods: 3 compressed pairs per budget, and the full cache against 3 methods at each budget.
    assert len(paired) == 2 * (3 + 3)
    assert all(row["method"] != row["against"] for row in paired)
    [snap_stream] = [row for row in paired if {row["method"], row["against"]} == {"snapkv", "streamingllm"}
                     and row["budget"] == 512]
    # SnapKV scores 80 and StreamingLLM 30 on every prompt at budget 512.
    sign = 1 if snap_stream["method"] == "snapkv" else -1
    assert sign * snap_stream["mean_difference"] == 50.0
    assert snap_stream["excludes_zero"]


def test_cells_carry_intervals_and_seeds_are_averaged_per_prompt(write_results):
    directory = write_results(standard_scores())
    add_method_seed(directory, "niah_single_1/prompt-circuitkv-b128.json", seed=1, score=60.0)

    summary = summarize(load(directory))
    [ours] = [row for row in summary["cells"]
              if row["task"] == "niah_single_1" and row["method"] == "circuitkv" and row["budget"] == 128]
    assert ours["num_seeds"] == 2
    assert ours["mean"] == pytest.approx(50.0)  # 40 and 60 averaged per prompt
    assert ours["num_samples"] == 2
    assert ours["low"] <= ours["mean"] <= ours["high"]
    assert sorted(ours["seed_means"]) == [40.0, 60.0]
    assert ours["seed_std"] == pytest.approx(14.1421356)


def test_cli_writes_summary_and_reports_missing_cells(write_results, tmp_path):
    directory = write_results(standard_scores())
    assert main(["--results-dir", str(directory)]) == 0
    assert json.loads((directory / "summary.json").read_text())["paired"]
    assert main(["--results-dir", str(tmp_path / "empty")]) == 2


def write_sweep(directory, method: str, budget, scores: dict):
    """A needle-sweep cell whose sample at (length, depth) scores ``scores[(length, depth)]``."""
    from conftest import _cell

    from pipeline.experiments.schema import cell_filename

    data = _cell("niah_sweep", method, budget, 0.0, num_samples=len(scores))
    data["config"]["context_tokens"] = None
    for sample, ((length, depth), score) in zip(data["samples"], scores.items()):
        sample["sample_id"] = f"niah_sweep-s0-n{length}-d{depth}"
        sample["score"] = score
    data["mean_score"] = sum(scores.values()) / len(scores)
    path = directory / "merged" / cell_filename("niah_sweep", method, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_sweep_grid_places_samples(write_results):
    directory = write_results(standard_scores())
    write_sweep(directory, "snapkv", 128, {(1024, 0): 100.0, (1024, 50): 0.0, (2048, 0): 100.0})
    [grid] = summarize(load(directory))["sweep"]
    assert (grid["method"], grid["budget"]) == ("snapkv", 128)
    assert grid["lengths"] == [1024, 2048]
    assert grid["depths"] == [0, 50]
    assert grid["scores"] == [[100.0, 0.0], [100.0, None]]


def test_longbench_e_cells_get_length_bins(write_results):
    directory = write_results({("multi_news", "full", None): 30.0})
    path = directory / "merged" / "multi_news" / "prompt-full-full.json"
    data = json.loads(path.read_text())
    for sample, (length, score) in zip(data["samples"], [(3000, 20.0), (9000, 40.0)]):
        sample["length"] = length
        sample["score"] = score
    path.write_text(json.dumps(data))
    [entry] = summarize(load(directory))["length_bins"]
    assert entry["bins"] == {"0-4k": {"mean": 20.0, "num_samples": 1}, "8k+": {"mean": 40.0, "num_samples": 1}}


def test_table_lists_each_cell_with_truncated_prompts(write_results, capsys):
    directory = write_results({("multi_news", "full", None): 30.0, ("niah_single_1", "snapkv", 128): 55.0})
    path = directory / "merged" / "multi_news" / "prompt-full-full.json"
    data = json.loads(path.read_text())
    data["samples"][0]["truncated"] = True
    path.write_text(json.dumps(data))

    assert main(["--results-dir", str(directory), "--table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "task", "length", "method", "budget", "mean", "95%", "interval", "n", "truncated", "nll", "agree",
    ]
    assert lines[1].split() == ["multi_news", "-", "full", "full", "30.0", "[30.0,", "30.0]", "2", "1", "-", "-"]
    assert lines[2].split() == ["niah_single_1", "4096", "snapkv", "128", "55.0", "[55.0,", "55.0]", "2", "0", "-", "-"]


def test_fidelity_metrics_get_means_intervals_and_pairs(write_results):
    directory = write_results(standard_scores())
    for name, nll, agreement in (("prompt-snapkv-b128.json", 2.0, 3), ("prompt-circuitkv-b128.json", 1.5, 5)):
        path = directory / "merged" / "niah_single_1" / name
        data = json.loads(path.read_text())
        for sample in data["samples"]:
            sample["answer_nll"] = nll
            sample["agreement_tokens"] = agreement
        path.write_text(json.dumps(data))

    summary = summarize(load(directory))
    [ours] = [row for row in summary["cells"]
              if row["task"] == "niah_single_1" and row["method"] == "circuitkv" and row["budget"] == 128]
    assert ours["answer_nll"]["mean"] == 1.5
    assert ours["agreement_tokens"]["mean"] == 5.0
    assert ours["agreement_tokens"]["num_samples"] == 2
    [stream] = [row for row in summary["cells"]
                if row["task"] == "niah_single_1" and row["method"] == "streamingllm" and row["budget"] == 128]
    assert stream["answer_nll"] is None

    [pair] = [row for row in summary["paired"] if row["task"] == "niah_single_1" and row["method"] == "snapkv"
              and row["against"] == "circuitkv" and row["budget"] == 128]
    assert pair["answer_nll"]["mean_difference"] == 0.5
    assert pair["answer_nll"]["low"] == 0.5
