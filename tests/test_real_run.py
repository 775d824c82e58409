"""One short real run of the default model with every method on a ~500-token needle prompt."""

import pytest

from pipeline.experiments.runner import GridConfig, run_grid
from pipeline.experiments.schema import read_cell

pytestmark = pytest.mark.slow

BUDGET = 128


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    config = GridConfig(
        tasks=["niah_single_1"],
        methods=["full", "streamingllm", "snapkv", "circuitkv"],
        budgets=[BUDGET],
        num_samples=1,
        context_tokens=500,
        results_dir=tmp_path_factory.mktemp("results"),
    )
    written = run_grid(config)
    return config, written


def test_every_method_writes_a_valid_cell(grid):
    config, written = grid
    names = sorted(path.name for path in written)
    assert names == [
        "prompt-circuitkv-b128.json", "prompt-full-full.json", "prompt-snapkv-b128.json", "prompt-streamingllm-b128.json",
    ]
    for path in written:
        cell = read_cell(path)
        assert cell.model.num_layers == 30
        assert 480 <= cell.samples[0].prompt_tokens <= 600


def test_compressed_caches_hold_the_budget(grid):
    for path in grid[1]:
        sample = read_cell(path).samples[0]
        if "full" in path.name:
            assert not sample.compressed
            assert sample.cache_lengths == [sample.prompt_tokens] * 30
        else:
            assert sample.compressed
            assert sample.cache_lengths == [BUDGET] * 30


def test_full_cache_finds_the_needle(grid):
    full = next(path for path in grid[1] if "full" in path.name)
    sample = read_cell(full).samples[0]
    assert sample.score == 100.0, sample.prediction
    assert sample.references[0] in sample.prediction


def test_rerun_skips_finished_cells(grid):
    config, written = grid
    stamps = {path: path.stat().st_mtime_ns for path in written}
    assert run_grid(config) == []
    assert {path: path.stat().st_mtime_ns for path in written} == stamps
