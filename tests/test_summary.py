"""The results summary: per-cell intervals and paired differences between every two methods."""

import json

import pytest
from conftest import add_method_seed, standard_scores

from pipeline.experiments.schema import read_cell
from pipeline.stats.summary import main, summarize


def load(directory):
    paths = sorted((directory / "cells").rglob("*.json"))
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
