"""Tests for the LongBench v1 loader on tiny files in the official format (CPU, offline)."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.benchmarks import longbench
from pipeline.model.loading import load_tokenizer

PROMPTS = {
    "hotpotqa": "Answer the question based on the given passages.\n\n{context}\n\nQuestion: {input}\nAnswer:",
    "multi_news": "You are given several news passages.\n\nNews:\n{context}\n\nSummary:",
    "trec": "Please determine the type of the question below.\n\n{context}\n{input}",
    "triviaqa": "Answer the question.\n\n{context}\n\n{input}",
    "samsum": "Summarize the dialogue.\n\n{context}\n\n{input}",
    "lsht": "请判断给定新闻的类别。\n\n{context}\n{input}",
    "lcc": "Please complete the code given below. \n{context}Next line of code:\n",
    "repobench-p": "Please complete the code given below. \n{context}{input}Next line of code:\n",
    "qasper": "Article: {context}\n\nQuestion: {input}\n\nAnswer:",
}
MAXLENS = {"hotpotqa": 32, "multi_news": 512, "trec": 64, "triviaqa": 32, "samsum": 128, "lsht": 64,
           "lcc": 64, "repobench-p": 64, "qasper": 128}


def make_row(index, dataset="hotpotqa", **overrides):
    row = {
        "input": f"Question {index}?",
        "context": f"Passage {index} with {{braces}} kept.",
        "answers": [f"answer {index}", f"alias {index}"],
        "length": 100 + index,
        "dataset": dataset,
        "language": "en",
        "all_classes": None,
        "_id": f"id{index:04d}",
    }
    row.update(overrides)
    return row


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path):
    """A LongBench-shaped directory: three rows per task and config/ with both JSON files."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "dataset2prompt.json").write_text(json.dumps(PROMPTS, ensure_ascii=False), encoding="utf-8")
    (config / "dataset2maxlen.json").write_text(json.dumps(MAXLENS), encoding="utf-8")
    for task in PROMPTS:
        write_jsonl(tmp_path / f"{task}.jsonl", [make_row(index, dataset=task) for index in range(3)])
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_template_filled_from_row(data_dir):
    samples = longbench.load("hotpotqa", data_dir)
    sample = samples[1]
    assert sample.prompt == (
        "Answer the question based on the given passages.\n\n"
        "Passage 1 with {braces} kept.\n\nQuestion: Question 1?\nAnswer:"
    )
    assert sample.task == "hotpotqa"
    assert sample.sample_id == "id0001"
    assert sample.references == ("answer 1", "alias 1")
    assert sample.metric == "qa_f1"
    assert sample.max_new_tokens == 32
    assert sample.keep_references is False
    assert sample.answer_prefix == ""
    assert sample.extra == {"all_classes": None, "length": 101}


def test_rows_in_file_order(data_dir):
    assert [sample.sample_id for sample in longbench.load("hotpotqa", data_dir, None, 2)] == ["id0000", "id0001"]
    assert [sample.sample_id for sample in longbench.load("hotpotqa", data_dir, None, None)] == [
        "id0000",
        "id0001",
        "id0002",
    ]
    assert len(longbench.load("hotpotqa", data_dir, None, 10)) == 3


def test_separate_config_dir(data_dir, tmp_path_factory):
    other = tmp_path_factory.mktemp("other_config")
    (other / "dataset2prompt.json").write_text(json.dumps({"hotpotqa": "Q: {input}"}), encoding="utf-8")
    (other / "dataset2maxlen.json").write_text(json.dumps({"hotpotqa": 7}), encoding="utf-8")
    sample = longbench.load("hotpotqa", data_dir, other, 1)[0]
    assert sample.prompt == "Q: Question 0?"
    assert sample.max_new_tokens == 7


@pytest.mark.parametrize("task", ["trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"])
def test_no_chat_template_tasks(task, data_dir):
    assert longbench.load(task, data_dir, None, 1)[0].use_chat_template is False


@pytest.mark.parametrize("task", ["hotpotqa", "multi_news", "qasper"])
def test_chat_template_tasks(task, data_dir):
    assert longbench.load(task, data_dir, None, 1)[0].use_chat_template is True


@pytest.mark.parametrize(
    ("task", "metric"),
    [("hotpotqa", "qa_f1"), ("multi_news", "rouge"), ("trec", "classification"), ("samsum", "rouge"),
     ("lcc", "code_sim"), ("triviaqa", "qa_f1")],
)
def test_metric_per_task(task, metric, data_dir):
    assert longbench.load(task, data_dir, None, 1)[0].metric == metric


def test_classes_kept_in_extra(data_dir):
    classes = ["Location", "Date"]
    write_jsonl(data_dir / "trec.jsonl", [make_row(0, "trec", all_classes=classes)])
    assert longbench.load("trec", data_dir)[0].extra["all_classes"] == classes


def test_truncate_middle_keeps_head_and_tail(tokenizer):
    text = " ".join(f"word{index}" for index in range(600))
    truncated, was_cut = longbench.truncate_middle(text, tokenizer, 100)
    assert was_cut is True
    assert truncated.startswith("word0 word1 word2")
    assert truncated.endswith("word597 word598 word599")
    assert "word300" not in truncated
    assert len(tokenizer.encode(truncated, add_special_tokens=False)) <= 102


def test_truncate_middle_short_text_unchanged(tokenizer):
    text = "A short prompt."
    assert longbench.truncate_middle(text, tokenizer, 100) == (text, False)


def test_truncate_middle_rejects_tiny_budget(tokenizer):
    with pytest.raises(ValueError, match="max_tokens must be >= 2"):
        longbench.truncate_middle("text", tokenizer, 1)


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        longbench.load("hotpotqa", missing)
    assert str(missing) in str(error.value)
    assert "LONGBENCH_DIR" in str(error.value)


def test_missing_task_file(data_dir):
    (data_dir / "qasper.jsonl").unlink()
    with pytest.raises(FileNotFoundError) as error:
        longbench.load("qasper", data_dir)
    assert str(data_dir / "qasper.jsonl") in str(error.value)
    assert "LONGBENCH_DIR" in str(error.value)


@pytest.mark.parametrize("name", ["dataset2prompt.json", "dataset2maxlen.json"])
def test_missing_config_file(name, data_dir):
    (data_dir / "config" / name).unlink()
    with pytest.raises(FileNotFoundError) as error:
        longbench.load("hotpotqa", data_dir)
    assert str(data_dir / "config" / name) in str(error.value)
    assert "LONGBENCH_CONFIG" in str(error.value)


def test_task_missing_from_config(data_dir):
    write_jsonl(data_dir / "musique.jsonl", [make_row(0, "musique")])
    with pytest.raises(ValueError) as error:
        longbench.load("musique", data_dir)
    message = str(error.value)
    assert "'musique' is missing from" in message
    assert str(data_dir / "config" / "dataset2prompt.json") in message
    assert "LONGBENCH_CONFIG" in message


def test_malformed_json_line_named(data_dir):
    path = data_dir / "hotpotqa.jsonl"
    path.write_text(json.dumps(make_row(0)) + "\n" + '{"input": "broken",\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2: invalid JSON")):
        longbench.load("hotpotqa", data_dir)


def test_malformed_line_after_requested_rows_ignored(data_dir):
    path = data_dir / "hotpotqa.jsonl"
    path.write_text(json.dumps(make_row(0)) + "\nnot json\n", encoding="utf-8")
    assert len(longbench.load("hotpotqa", data_dir, None, 1)) == 1


def test_non_object_line_named(data_dir):
    path = data_dir / "hotpotqa.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: expected a JSON object, got list")):
        longbench.load("hotpotqa", data_dir)


@pytest.mark.parametrize("field", ["_id", "answers", "context", "input"])
def test_missing_field_named(field, data_dir):
    path = data_dir / "hotpotqa.jsonl"
    bad = make_row(1)
    del bad[field]
    write_jsonl(path, [make_row(0), bad])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2: missing field '{field}'")):
        longbench.load("hotpotqa", data_dir)


def test_classification_needs_all_classes(data_dir):
    path = data_dir / "trec.jsonl"
    row = make_row(0, "trec")
    del row["all_classes"]
    write_jsonl(path, [row])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: missing field 'all_classes'")):
        longbench.load("trec", data_dir)


def test_answers_must_be_string_list(data_dir):
    path = data_dir / "hotpotqa.jsonl"
    write_jsonl(path, [make_row(0, answers="just a string")])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: field 'answers' must be a list of strings")):
        longbench.load("hotpotqa", data_dir)


def test_invalid_config_json_named(data_dir):
    path = data_dir / "config" / "dataset2maxlen.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}: invalid JSON")):
        longbench.load("hotpotqa", data_dir)


def test_unsupported_template_field_named(data_dir):
    prompts = dict(PROMPTS, hotpotqa="{context[0]} {input}")
    (data_dir / "config" / "dataset2prompt.json").write_text(json.dumps(prompts), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape("placeholder {context[0]}")):
        longbench.load("hotpotqa", data_dir)


def test_num_samples_must_be_positive(data_dir):
    with pytest.raises(ValueError, match="num_samples must be >= 1 or None"):
        longbench.load("hotpotqa", data_dir, None, 0)


def test_longbench_e_reads_e_file_with_base_task_settings(tmp_path):
    import json

    from pipeline.benchmarks import longbench

    config = tmp_path / "config"
    config.mkdir()
    (config / "dataset2prompt.json").write_text(json.dumps({"trec": "Examples:\n{context}\n{input}"}))
    (config / "dataset2maxlen.json").write_text(json.dumps({"trec": 64}))
    row = {"_id": "e1", "input": "What is X?", "context": "Q: A? Type: B", "answers": ["Abbreviation"],
           "length": 5100, "all_classes": ["Abbreviation", "Food"]}
    (tmp_path / "trec_e.jsonl").write_text(json.dumps(row) + "\n")
    [sample] = longbench.load("trec_e", tmp_path)
    assert sample.task == "trec"
    assert sample.max_new_tokens == 64
    assert sample.extra["length"] == 5100
    assert longbench.length_bin(sample.extra["length"]) == "4-8k"
    assert longbench.category("trec_e") == "few-shot"


@pytest.mark.parametrize(
    "length, expected", [(0, "0-4k"), (3999, "0-4k"), (4000, "4-8k"), (7999, "4-8k"), (8000, "8k+")]
)
def test_length_bins_match_longbench_e(length, expected):
    from pipeline.benchmarks.longbench import length_bin

    assert length_bin(length) == expected


def test_every_metric_task_has_a_category():
    from pipeline.benchmarks.longbench import TASK_METRICS, category

    assert {category(task) for task in TASK_METRICS} == {
        "single-doc QA", "multi-doc QA", "summarization", "few-shot", "synthetic", "code",
    }
