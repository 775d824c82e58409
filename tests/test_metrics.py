"""Tests for per-sample metrics, each against a value computed by hand."""

from __future__ import annotations

import pytest

from pipeline.benchmarks.metrics import normalize_answer, postprocess, score


# string_match_all: 100 * (references found, case-insensitive) / (number of references).
@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("The numbers are 1234567 and 7654321.", ["1234567", "7654321"], 100.0),
        ("The number is 1234567.", ["1234567", "7654321"], 50.0),
        ("Only 1234567 here.", ["1234567", "7654321", "1111111"], 100.0 / 3),
        ("ÉCOLE NORMALE", ["école"], 100.0),
        ("", ["1234567"], 0.0),
    ],
)
def test_string_match_all(prediction, references, expected):
    assert score("string_match_all", prediction, references) == pytest.approx(expected)


# qa_f1: F1 = 2PR / (P + R) over normalized tokens, maximum over references.
@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        # "the" and punctuation removed: both normalize to "eiffel tower".
        ("The Eiffel Tower!", ["eiffel tower"], 100.0),
        # P = 1/2, R = 1.
        ("Paris, France", ["Paris"], 200.0 / 3),
        # vs "obama": P = 1/2, R = 1, F = 2/3. vs "barack hussein obama": P = 1, R = 2/3, F = 0.8.
        ("Barack Obama", ["Obama", "Barack Hussein Obama"], 80.0),
        # Non-ASCII letters are lowercased and kept: P = 1/2, R = 1.
        ("Café Crème", ["café"], 200.0 / 3),
        # Only ASCII punctuation is removed, so "don’t" (U+2019) stays apart from "dont".
        ("don’t", ["don't"], 0.0),
        ("", ["Paris"], 0.0),
        ("an apple", ["the apple"], 100.0),
    ],
)
def test_qa_f1(prediction, references, expected):
    assert score("qa_f1", prediction, references) == pytest.approx(expected)


def test_normalize_answer():
    assert normalize_answer("  The  Quick, brown fox; an ANT!  ") == "quick brown fox ant"


# rouge: ROUGE-L F1 (summary level, sets of case-sensitive words) from the rouge package;
# the package adds 1e-8 to the F1 denominator, hence the 1e-5 tolerance.
@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        # Reference 5 words, prediction 4, LCS "police arrested two" = 3: R = 3/5, P = 3/4, F = 2/3.
        ("police arrested two men", ["police arrested the two suspects"], 200.0 / 3),
        # Maximum over references: the second matches exactly.
        ("police arrested two men", ["a dog barked", "police arrested two men"], 100.0),
        # Reference {Zoë, won}, prediction 4 words, LCS 2: R = 1, P = 1/2, F = 2/3.
        ("Zoë won the prize", ["Zoë won"], 200.0 / 3),
        # Case-sensitive: only "arrested" matches. R = P = 1/2.
        ("Police arrested", ["police arrested"], 50.0),
        ("", ["police arrested"], 0.0),
        ("   ", ["police arrested"], 0.0),
        # The package raises on a reference with no sentence; LongBench scores that 0.
        ("police arrested", ["..."], 0.0),
    ],
)
def test_rouge(prediction, references, expected):
    assert score("rouge", prediction, references) == pytest.approx(expected, abs=1e-5)


def test_rouge_summary_against_itself():
    summary = "The council approved the budget. Taxes will rise by two percent next year."
    assert score("rouge", summary, [summary]) == pytest.approx(100.0, abs=1e-5)


@pytest.mark.parametrize("task", ["trec", "triviaqa", "samsum", "lsht"])
def test_postprocess_keeps_first_line(task):
    assert postprocess(task, "\n\nLocation\nQuestion: next one") == "Location"


@pytest.mark.parametrize("task", ["hotpotqa", "multi_news", "niah_single_1"])
def test_postprocess_leaves_other_tasks(task):
    assert postprocess(task, "\nfirst\nsecond") == "\nfirst\nsecond"


def test_unknown_metric_names_supported():
    with pytest.raises(ValueError) as error:
        score("bleu", "a", ["a"])
    message = str(error.value)
    assert "'bleu'" in message
    assert "qa_f1, retrieval, rouge, string_match_all" in message


def test_chinese_longbench_metric_named():
    with pytest.raises(ValueError, match="Metric 'rouge_zh' scores LongBench's Chinese tasks"):
        score("rouge_zh", "a", ["a"])


# Hand-computed cases; LongBench's own metrics.py gives the same numbers.
TREC_CLASSES = ["Abbreviation", "Animal", "Description", "Definition", "Expression abbreviated", "Food"]


@pytest.mark.parametrize(
    "prediction, references, expected",
    [
        ("Food", ["Food"], 100.0),
        ("Animal or Food", ["Food"], 50.0),  # two classes matched, one is right
        ("", ["Food"], 0.0),
        ("Definition", ["Description", "Definition"], 100.0),  # best reference
        ("Expression abbreviated", ["Expression abbreviated"], 100.0),  # "abbreviated" is not "Abbreviation"
        ("Ánimal", ["Animal"], 0.0),  # no Unicode folding
    ],
)
def test_classification_cases(prediction, references, expected):
    assert score("classification", prediction, references, all_classes=TREC_CLASSES) == pytest.approx(expected)


def test_classification_drops_classes_inside_the_reference_as_longbench_does():
    classes = ["Location", "Location city", "Location city capital"]
    # Both shorter names are inside the reference. LongBench removes while iterating, so the second stays:
    # matches [Location, Location city, Location city capital] -> drop "Location" -> skip "Location city".
    assert score("classification", "Location city capital", ["Location city capital"], all_classes=classes) == 50.0


def test_classification_needs_all_classes():
    with pytest.raises(ValueError, match="all_classes"):
        score("classification", "Food", ["Food"])


@pytest.mark.parametrize(
    "prediction, references, expected",
    [
        ("Paragraph 3", ["Paragraph 3"], 100.0),
        ("Paragraph 3 or Paragraph 12", ["Paragraph 12"], 50.0),
        ("", ["Paragraph 3"], 0.0),
        ("no paragraph", ["Paragraph 3"], 0.0),
        ("Paragraph 30", ["Paragraph 3", "Paragraph 30"], 100.0),
        ("段落 ٣ and 3", ["Paragraph 3"], 50.0),  # \d matches the Arabic-Indic three, which is not "3"
    ],
)
def test_retrieval_cases(prediction, references, expected):
    assert score("retrieval", prediction, references) == pytest.approx(expected)


@pytest.mark.parametrize(
    "prediction, references, expected",
    [
        ("12", ["12"], 100.0),
        ("12 12 3", ["12"], 100 * 2 / 3),
        ("", ["12"], 0.0),
        ("1203", ["12"], 0.0),
        ("zwölf: 12", ["12"], 100.0),
        ("3", ["12", "3"], 100.0),
    ],
)
def test_count_cases(prediction, references, expected):
    assert score("count", prediction, references) == pytest.approx(expected)


@pytest.mark.parametrize(
    "prediction, references, expected",
    [
        ("x = 1", ["x = 1"], 100.0),
        ("", ["x = 1"], 0.0),
        ("# set x\nx = 1", ["x = 1"], 100.0),  # comment lines are skipped
        ("abcd", ["abce"], 75.0),  # SequenceMatcher ratio 2 * 3 / 8
        ("naïve = 1", ["naive = 1"], 89.0),  # 2 * 8 / 18 = 0.888..., rounded to 89
        ("abcd", ["zzzz", "abcd"], 100.0),
        ("`code`\n// note\n", ["x"], 0.0),  # no code line left: empty prediction
    ],
)
def test_code_similarity_cases(prediction, references, expected):
    assert score("code_sim", prediction, references) == pytest.approx(expected)


def test_empty_references_rejected():
    with pytest.raises(ValueError, match="references is empty"):
        score("qa_f1", "a", [])


def test_single_string_reference_rejected():
    with pytest.raises(TypeError, match="not a single str"):
        score("string_match_all", "1234567", "1234567")
