"""Tests for the RULER-style generator and its haystacks (CPU, offline)."""

from __future__ import annotations

import re

import pytest

from pipeline.benchmarks import ruler
from pipeline.benchmarks.haystack import (
    NOISE_SENTENCES,
    NOISE_TEXT,
    EssayHaystack,
    NoiseHaystack,
    insert_needles,
    read_essays,
    split_sentences,
)
from pipeline.model.loading import load_tokenizer

TASKS = ("niah_single_1", "niah_multikey_1")
NEEDLE_PATTERN = re.compile(r"One of the special magic numbers for (\S+) is: (\d+)\.")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def count_tokens(text, tokenizer):
    return len(tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_identical_samples(task, tokenizer):
    first = ruler.generate(task, 3, 1024, tokenizer, seed=7)
    second = ruler.generate(task, 3, 1024, tokenizer, seed=7)
    assert first == second


@pytest.mark.parametrize("task", TASKS)
def test_different_seeds_differ(task, tokenizer):
    seed_0 = ruler.generate(task, 3, 1024, tokenizer, seed=0)
    seed_1 = ruler.generate(task, 3, 1024, tokenizer, seed=1)
    for sample_0, sample_1 in zip(seed_0, seed_1):
        assert sample_0.prompt != sample_1.prompt
        assert sample_0.references != sample_1.references
        assert sample_0.sample_id != sample_1.sample_id


@pytest.mark.parametrize("task", TASKS)
def test_sample_independent_of_count(task, tokenizer):
    assert ruler.generate(task, 2, 1024, tokenizer, seed=5) == ruler.generate(task, 4, 1024, tokenizer, seed=5)[:2]


@pytest.mark.parametrize("target", [1024, 4096])
@pytest.mark.parametrize("task", TASKS)
def test_prompt_length_within_two_percent(task, target, tokenizer):
    samples = ruler.generate(task, 4, target, tokenizer, seed=11)
    for sample in samples:
        num_tokens = count_tokens(sample.prompt + sample.answer_prefix, tokenizer)
        assert abs(num_tokens - target) <= 0.02 * target, (sample.sample_id, num_tokens)
        assert sample.extra["prompt_tokens"] == num_tokens


def test_target_too_small_rejected(tokenizer):
    with pytest.raises(ValueError, match="target_tokens=20 is too small for niah_single_1"):
        ruler.generate("niah_single_1", 1, 20, tokenizer)


def test_sample_fields(tokenizer):
    sample = ruler.generate("niah_single_1", 2, 1024, tokenizer, seed=3)[1]
    query = NEEDLE_PATTERN.search(sample.prompt).group(1)
    assert sample.task == "niah_single_1"
    assert sample.sample_id == "niah_single_1-s3-1"
    assert sample.metric == "string_match_all"
    assert sample.max_new_tokens == 128
    assert sample.use_chat_template is True
    assert sample.keep_references is True
    assert sample.answer_prefix == f" The special magic number for {query} mentioned in the provided text is"
    assert sample.prompt.startswith(
        "A special magic number is hidden within the following text. Make sure to memorize it. "
        "I will quiz you about the number afterwards.\n"
    )
    assert sample.prompt.endswith(f"\nWhat is the special magic number for {query} mentioned in the provided text?")


def test_single_needle_in_prompt_and_references(tokenizer):
    for sample in ruler.generate("niah_single_1", 5, 1024, tokenizer, seed=2):
        needles = NEEDLE_PATTERN.findall(sample.prompt)
        assert len(needles) == 1
        key, value = needles[0]
        assert re.fullmatch(r"[1-9]\d{6}", value)
        assert sample.references == (value,)
        assert sample.prompt.count(value) == 1
        assert f"for {key} mentioned" in sample.answer_prefix


def test_single_needle_on_own_noise_line(tokenizer):
    sample = ruler.generate("niah_single_1", 1, 1024, tokenizer)[0]
    lines = sample.prompt.split("\n")
    needle_lines = [line for line in lines if NEEDLE_PATTERN.search(line)]
    assert len(needle_lines) == 1
    assert NEEDLE_PATTERN.fullmatch(needle_lines[0])
    assert lines.count(NOISE_TEXT) >= 30


def test_single_needle_at_drawn_depth(tokenizer):
    for sample in ruler.generate("niah_single_1", 5, 4096, tokenizer, seed=9):
        context = sample.prompt.split("\n", 1)[1].rsplit("\n", 1)[0]
        position = NEEDLE_PATTERN.search(context).start() / len(context)
        assert abs(position - sample.extra["query_depth"] / 100) < 0.03, sample.sample_id


def test_needle_depths_vary_across_samples(tokenizer):
    samples = ruler.generate("niah_single_1", 8, 1024, tokenizer, seed=6)
    positions = {sample.prompt.find("One of the special magic numbers") for sample in samples}
    assert len(positions) >= 4
    for sample in ruler.generate("niah_multikey_1", 3, 1024, tokenizer, seed=6):
        assert len(set(sample.extra["needle_depths"])) == 4


def test_multikey_four_distinct_needles(tokenizer):
    for sample in ruler.generate("niah_multikey_1", 5, 1024, tokenizer, seed=4):
        needles = NEEDLE_PATTERN.findall(sample.prompt)
        keys = [key for key, _ in needles]
        values = [value for _, value in needles]
        assert len(needles) == 4
        assert len(set(keys)) == 4
        assert len(set(values)) == 4

        query = sample.answer_prefix.split(" for ")[1].split(" mentioned")[0]
        assert query in keys
        assert sample.references == (dict(needles)[query],)
        assert f"What is the special magic number for {query} mentioned" in sample.prompt
        distractors = [value for key, value in needles if key != query]
        assert not set(distractors) & set(sample.references)
        assert len(sample.extra["needle_depths"]) == 4


def test_multikey_reads_essay_directory(tmp_path, tokenizer):
    sentence = "Zebras graze quietly near the river bank."
    (tmp_path / "a.txt").write_text(" ".join([sentence] * 400), encoding="utf-8")
    sample = ruler.generate("niah_multikey_1", 1, 1024, tokenizer, essays_dir=tmp_path)[0]
    assert sentence in sample.prompt
    assert sample.extra["haystack"] == "essay"
    assert len(NEEDLE_PATTERN.findall(sample.prompt)) == 4


def test_unknown_task_lists_supported(tokenizer):
    with pytest.raises(ValueError) as error:
        ruler.generate("niah_bogus", 1, 1024, tokenizer)
    message = str(error.value)
    assert "niah_bogus" in message
    assert "niah_single_1" in message
    assert "niah_multikey_1" in message


def test_missing_essay_directory_named(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_essays(missing)


def test_essay_directory_without_txt_named(tmp_path):
    (tmp_path / "notes.md").write_text("not an essay", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))} contains no .txt files"):
        read_essays(tmp_path)


def test_essay_files_read_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("Second essay.", encoding="utf-8")
    (tmp_path / "a.txt").write_text("First essay.", encoding="utf-8")
    assert read_essays(tmp_path) == "First essay.\nSecond essay."


def test_default_essay_text_offline():
    text = read_essays(None)
    assert len(text.split()) > 10_000


def test_noise_sentences_match_ruler():
    assert NOISE_TEXT == "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    assert " ".join(NOISE_SENTENCES) == NOISE_TEXT
    assert len(NOISE_SENTENCES) == 5


def test_noise_render_partial_last_line():
    text = NoiseHaystack().render(7, [], [])
    assert text == NOISE_TEXT + "\nThe grass is green. The sky is blue."


def test_split_sentences_round_trip():
    text = 'He said "Go." Then he left. Really? Yes! (Fine.) No end'
    sentences = split_sentences(text)
    assert sentences == ['He said "Go."', "Then he left.", "Really?", "Yes!", "(Fine.)", "No end"]
    assert " ".join(sentences) == text


def test_insert_needles_at_depths():
    units = ["a", "b", "c", "d"]
    assert insert_needles(units, ["start", "end", "middle"], [0, 100, 50]) == ["start", "a", "b", "middle", "c", "d", "end"]


def test_insert_needles_rejects_bad_depth():
    with pytest.raises(ValueError, match="outside"):
        insert_needles(["a"], ["x"], [101])


def test_essay_render_repeats_short_text():
    haystack = EssayHaystack("One two. Three.")
    assert haystack.render(5, ["N."], [100]) == "One two. Three. One two. N."


def test_essays_are_described_by_hash_not_path(tmp_path):
    from pipeline.benchmarks.haystack import describe_essays

    (tmp_path / "a.txt").write_text("One essay.")
    first = describe_essays(tmp_path)
    assert str(tmp_path) not in first
    assert first.startswith("essay directory, sha256 ")
    (tmp_path / "a.txt").write_text("Another essay.")
    assert describe_essays(tmp_path) != first


def test_essay_task_cells_record_their_haystack(tmp_path):
    from pipeline.experiments.runner import GridConfig, plan_cells

    (tmp_path / "a.txt").write_text("One essay.")
    config = GridConfig(tasks=["niah_multikey_1"], methods=["full"], essays_dir=tmp_path)
    [cell] = plan_cells("niah_multikey_1", "ruler", config)
    assert cell.haystack.startswith("essay directory, sha256 ")
    [noise] = plan_cells("niah_single_1", "ruler", config)
    assert noise.haystack is None


ALL_TASKS = sorted(ruler.TASKS)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_suite_covers_rulers_synthetic_tasks():
    assert set(ALL_TASKS) == {
        "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
        "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe",
    }


@pytest.fixture(scope="module")
def suite(tokenizer):
    return {task: ruler.generate(task, 2, 4096, tokenizer, seed=1) for task in ALL_TASKS}


@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_meets_the_length_and_repeats(task, suite, tokenizer):
    for sample in suite[task]:
        length = count_tokens(sample.prompt + sample.answer_prefix, tokenizer)
        assert abs(length - 4096) <= 0.02 * 4096, (sample.sample_id, length)
        assert sample.prompt.endswith(sample.question)
    assert ruler.generate(task, 1, 4096, tokenizer, seed=1)[0] == suite[task][0]


@pytest.mark.parametrize("task", [task for task in ALL_TASKS if task.startswith("niah")])
def test_niah_references_are_needles_for_the_queried_keys(task, suite):
    pattern = re.compile(r"One of the special magic (?:numbers|uuids) for (\S+) is: (\S+)\.")
    for sample in suite[task]:
        needles = pattern.findall(sample.prompt)
        for reference in sample.references:
            keys = [key for key, value in needles if value == reference]
            assert len(keys) == 1, reference
            assert keys[0] in sample.answer_prefix


def test_niah_variants_differ_as_in_ruler(suite):
    assert len(suite["niah_multivalue"][0].references) == 4
    assert len(suite["niah_multiquery"][0].references) == 4
    assert suite["niah_multiquery"][0].answer_prefix.count(", ") == 3
    assert "What are all the special magic numbers" in suite["niah_multivalue"][0].prompt
    assert UUID.fullmatch(suite["niah_single_3"][0].references[0])
    # Needle haystacks are made of distractor needles, one per line.
    lines = suite["niah_multikey_2"][0].prompt.split("\n")
    assert sum(line.startswith("One of the special magic numbers") for line in lines) > 100
    assert UUID.search(suite["niah_multikey_3"][0].prompt.split("\n")[1])


def test_variable_tracking_chain_in_order(suite):
    for sample in suite["vt"]:
        names = sample.references
        value = sample.answer_prefix.split("the value ")[1].split(",")[0]
        statements = [line for line in sample.prompt.split("\n") if line.startswith("VAR ")]
        assert statements[0] == f"VAR {names[0]} = {value}"
        assert statements[1:] == [f"VAR {names[i + 1]} = VAR {names[i]}" for i in range(4)]
        assert "5 variables" in sample.answer_prefix


def test_common_words_are_the_most_frequent(suite):
    for sample in suite["cwe"]:
        listing = sample.prompt.rsplit("\nQuestion:", 1)[0].rsplit("most often.\n", 1)[1]
        words = re.findall(r"\d+\. (\S+)", listing)
        counts = {word: words.count(word) for word in set(words)}
        assert all(counts[word] == 30 for word in sample.references)
        assert all(count == 3 for word, count in counts.items() if word not in sample.references)
        assert sample.prompt.startswith("Below is a numbered list")  # the worked example comes first


def test_frequent_words_follow_the_zipf_ranks(suite):
    for sample in suite["fwe"]:
        coded = sample.prompt.split("coded words. ", 1)[1].split("\nQuestion:")[0].split()
        ranked = sorted(set(coded), key=coded.count, reverse=True)
        assert ranked[0] == "..."
        assert tuple(ranked[1:4]) == sample.references


def test_coarse_sizes_that_miss_the_tolerance_are_explained(tokenizer):
    coarse = ruler.RulerTask(
        name="coarse", template="{context}", answer_prefix="", max_new_tokens=8, haystack="noise", unit="blocks",
        build=lambda rng, size, resources: ruler.Built(" apple" * (100 * size), {}, ("apple",)),
    )
    resources = ruler.Resources(None, 1050)
    with pytest.raises(ValueError, match=r"within ±2% of 1050 tokens: 10 blocks give 1000 and 11 give 1100"):
        ruler.fit_size(coarse, "coarse-0", 1050, tokenizer, resources)


def test_zeta_of_two_is_pi_squared_over_six():
    import math

    assert ruler.zeta(2.0) == pytest.approx(math.pi**2 / 6, rel=1e-9)


def test_sweep_places_one_needle_at_each_depth_and_length(tokenizer):
    samples = ruler.sweep(tokenizer, lengths=(1024, 2048), depths=(0, 50, 100), seed=2)
    assert len(samples) == 6
    for sample in samples:
        length, depth = ruler.sweep_point(sample.sample_id)
        assert (length, depth) == (sample.extra["target_tokens"], sample.extra["depth"])
        assert abs(count_tokens(sample.prompt + sample.answer_prefix, tokenizer) - length) <= 0.02 * length
        context = sample.prompt.split("\n", 1)[1].rsplit("\n", 1)[0]
        position = NEEDLE_PATTERN.search(context).start() / len(context)
        # Needles go between sentences, counted by sentences, so character position drifts with sentence length.
        assert abs(position - depth / 100) < 0.1, sample.sample_id


def test_sweep_is_a_grid_task_of_the_runner(tmp_path):
    from pipeline.experiments.runner import GridConfig, plan_cells, task_benchmark

    config = GridConfig(tasks=["niah_sweep"], methods=["snapkv"], budgets=[128], results_dir=tmp_path)
    assert task_benchmark("niah_sweep", config) == "ruler"
    [cell] = plan_cells("niah_sweep", "ruler", config)
    assert cell.task_samples == len(ruler.SWEEP_LENGTHS) * len(ruler.SWEEP_DEPTHS) == 50
    assert cell.context_tokens is None


def test_bad_sweep_ids_and_depths_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="not a sweep sample id"):
        ruler.sweep_point("niah_single_1-s0-3")
    with pytest.raises(ValueError, match="outside"):
        ruler.sweep(tokenizer, lengths=(1024,), depths=(120,))


def test_pregenerated_ruler_jsonl_is_read(tmp_path):
    import json

    rows = [
        {"index": 0, "input": "Noise.\nOne of the special magic numbers for a-b is: 123.\nWhat is the number for a-b?",
         "outputs": ["123"], "length": 40, "answer_prefix": " The number is"},
        {"index": 1, "input": "Noise.\nWhat is the number for c-d?", "outputs": ["456"], "length": 30},
    ]
    path = tmp_path / "niah_single_1.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first, second = ruler.load_jsonl(path, "niah_single_1")
    assert first.sample_id == "niah_single_1-jsonl-0"
    assert first.references == ("123",)
    assert first.question == "\nWhat is the number for a-b?"
    assert first.answer_prefix == " The number is"
    assert second.answer_prefix == ""
    assert len(ruler.load_jsonl(path, "niah_single_1", num_samples=1)) == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"index": 0, "input": "x"}', "missing field"),
        ('{"index": 0, "input": "x", "outputs": []}', "non-empty list"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_ruler_jsonl_rows_name_the_line(tmp_path, line, message):
    path = tmp_path / "vt.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=rf"vt\.jsonl, line 1: .*{message}"):
        ruler.load_jsonl(path, "vt")


def test_runner_reads_ruler_jsonl_when_present(tmp_path, tokenizer):
    import json

    from pipeline.experiments.runner import GridConfig, plan_cells, load_samples

    row = {"index": 0, "input": "Noise.\nWhat is the number for a-b?", "outputs": ["123"]}
    (tmp_path / "vt.jsonl").write_text(json.dumps(row) + "\n")
    config = GridConfig(tasks=["vt"], methods=["full"], num_samples=1, ruler_dir=tmp_path, results_dir=tmp_path)
    [sample] = load_samples("vt", config, tokenizer)
    assert sample.sample_id == "vt-jsonl-0"
    [cell] = plan_cells("vt", "ruler", config)
    assert cell.haystack.startswith("RULER jsonl, sha256 ")
    assert config.ruler_file("niah_single_1") is None
