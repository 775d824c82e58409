"""One short real run of the default model: every method, both protocols, a ~500-token needle prompt."""

import pytest

from pipeline.experiments.runner import DEFAULT_METHODS, GridConfig, run_grid
from pipeline.experiments.schema import cell_filename, read_cell

pytestmark = pytest.mark.slow

BUDGET = 128


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    config = GridConfig(
        tasks=["niah_single_1"],
        methods=list(DEFAULT_METHODS),
        budgets=[BUDGET],
        protocols=["prompt", "context"],
        num_samples=1,
        context_lengths=[500],
        results_dir=tmp_path_factory.mktemp("results"),
    )
    written = run_grid(config)
    return config, written


def _name(path):
    config = read_cell(path).config
    return cell_filename(config.task, config.method, config.budget, config.protocol, context_tokens=config.context_tokens)


def test_every_method_writes_a_valid_cell(grid):
    config, written = grid
    names = sorted(_name(path) for path in written)
    expected = [f"{method}-b128.json" for method in DEFAULT_METHODS if method != "full"] + ["full-full.json"]
    assert names == sorted(f"niah_single_1/ctx500-{protocol}-{name}" for protocol in ("prompt", "context")
                           for name in expected)
    for path in written:
        cell = read_cell(path)
        assert path.stem == cell.config.key
        assert cell.model.num_layers == 30
        assert 480 <= cell.samples[0].prompt_tokens <= 600


def test_compressed_caches_hold_the_budget(grid):
    for path in grid[1]:
        sample = read_cell(path).samples[0]
        if "full" in _name(path):
            assert not sample.compressed
            assert sample.cache_lengths == [sample.context_tokens] * 30
        else:
            assert sample.compressed
            assert sample.cache_lengths == sample.layer_budgets
            assert sum(sample.cache_lengths) == 30 * BUDGET
            assert sample.kv_bytes < sample.full_kv_bytes
        if read_cell(path).config.protocol == "context":
            assert sample.context_tokens < sample.prompt_tokens


def test_full_cache_finds_the_needle_in_both_protocols(grid):
    for full in (path for path in grid[1] if "full-full" in _name(path)):
        sample = read_cell(full).samples[0]
        assert sample.score == 100.0, sample.prediction
        assert sample.references[0] in sample.prediction


def test_rerun_skips_finished_cells(grid):
    config, written = grid
    stamps = {path: path.stat().st_mtime_ns for path in written}
    assert run_grid(config) == []
    assert {path: path.stat().st_mtime_ns for path in written} == stamps
