"""Result files: atomic writes and validation errors that name the file and field."""

import json
import logging

import pytest

from pipeline.experiments.schema import CellResult, ResultsError, read_cell, write_cell


@pytest.fixture
def cell_path(write_results):
    from conftest import standard_scores

    directory = write_results(standard_scores())
    return directory / "merged" / "niah_single_1" / "prompt-snapkv-b128.json"


def test_valid_cell_reads(cell_path):
    cell = read_cell(cell_path)
    assert cell.config.method == "snapkv"
    assert cell.mean_score == 60.0


def test_invalid_json_names_file_and_line(cell_path):
    cell_path.write_text('{"schema_version": 1,\n "config": ')
    with pytest.raises(ResultsError, match=r"prompt-snapkv-b128\.json: invalid JSON at line 2"):
        read_cell(cell_path)


def test_missing_field_is_named(cell_path):
    data = json.loads(cell_path.read_text())
    del data["samples"][1]["score"]
    cell_path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"field samples\.1\.score: Field required"):
        read_cell(cell_path)


def test_out_of_range_score_is_named(cell_path):
    data = json.loads(cell_path.read_text())
    data["mean_score"] = 140
    cell_path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="field mean_score"):
        read_cell(cell_path)


def test_sample_count_must_match_config(cell_path):
    data = json.loads(cell_path.read_text())
    data["samples"].pop()
    cell_path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="num_samples is 2 but the file has 1 samples"):
        read_cell(cell_path)


def test_edited_mean_warns_but_is_used(cell_path, caplog):
    data = json.loads(cell_path.read_text())
    data["mean_score"] = 55.5
    cell_path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        cell = read_cell(cell_path)
    assert cell.mean_score == 55.5
    assert "differs from the mean" in caplog.text


def test_write_is_atomic_and_round_trips(cell_path, tmp_path):
    cell = read_cell(cell_path)
    target = tmp_path / "out" / "cell.json"
    write_cell(target, cell)
    assert read_cell(target) == cell
    assert [p.name for p in target.parent.iterdir()] == ["cell.json"]  # no temporary left behind


def test_failed_write_keeps_previous_file(cell_path, tmp_path, monkeypatch):
    cell = read_cell(cell_path)
    target = tmp_path / "cell.json"
    write_cell(target, cell)
    before = target.read_text()

    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(CellResult, "model_dump", broken_dump)
    with pytest.raises(RuntimeError):
        write_cell(target, cell)
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _edit(cell_path, change):
    data = json.loads(cell_path.read_text())
    change(data)
    cell_path.write_text(json.dumps(data))


def test_cache_lengths_off_the_schedule_are_rejected(cell_path):
    _edit(cell_path, lambda data: data["samples"][0]["cache_lengths"].__setitem__(3, 129))
    with pytest.raises(ResultsError, match=r"samples\.0: Value error, cache_lengths .* differ from the schedule"):
        read_cell(cell_path)


def test_compressed_sample_with_full_bytes_is_rejected(cell_path):
    def uncompressed(data):
        sample = data["samples"][0]
        sample["cache_lengths"] = sample["layer_budgets"] = [4096] * 30
        sample["kv_bytes"] = sample["full_kv_bytes"]

    _edit(cell_path, uncompressed)
    with pytest.raises(ResultsError, match="kv_bytes .* is not below full_kv_bytes"):
        read_cell(cell_path)


def test_long_prompt_left_uncompressed_is_rejected(cell_path):
    def whole(data):
        sample = data["samples"][0]
        sample.update(compressed=False, layer_budgets=None, cache_lengths=[4096] * 30, kv_bytes=sample["full_kv_bytes"])

    _edit(cell_path, whole)
    with pytest.raises(ResultsError, match="not compressed although its 4096 context tokens exceed the budget 128"):
        read_cell(cell_path)


def test_kv_bytes_must_follow_from_lengths_and_model(cell_path):
    _edit(cell_path, lambda data: data["samples"][1].update(kv_bytes=12345))
    with pytest.raises(ResultsError, match="sample niah_single_1-s0-1: kv_bytes 12345 does not match"):
        read_cell(cell_path)


def test_budget_and_ratio_together_are_rejected(cell_path):
    _edit(cell_path, lambda data: data["config"].update(budget_ratio=0.1))
    with pytest.raises(ResultsError, match="give budget or budget_ratio, not both"):
        read_cell(cell_path)


def test_older_schema_version_asks_for_a_rerun(cell_path):
    _edit(cell_path, lambda data: data.update(schema_version=1))
    with pytest.raises(ResultsError, match="written with schema_version 1, but this pipeline reads version 2"):
        read_cell(cell_path)


def test_many_problems_are_summarized(cell_path):
    def strip(data):
        for sample in data["samples"]:
            del sample["score"], sample["prediction"], sample["generated_tokens"]

    _edit(cell_path, strip)
    with pytest.raises(ResultsError, match="and 1 more") as error:
        read_cell(cell_path)
    assert str(error.value).count("Field required") == 5


def test_atomic_writes_get_normal_file_permissions(tmp_path):
    import os
    import stat

    from pipeline.atomic import write_text_atomically

    umask = os.umask(0o022)
    try:
        target = tmp_path / "out.json"
        write_text_atomically(target, "{}\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(umask)
