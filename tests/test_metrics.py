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
    assert "qa_f1, rouge, string_match_all" in message


def test_unimplemented_longbench_metric_named():
    with pytest.raises(ValueError, match="Metric 'code_sim' \\(LongBench\\) is not implemented yet"):
        score("code_sim", "a", ["a"])


def test_empty_references_rejected():
    with pytest.raises(ValueError, match="references is empty"):
        score("qa_f1", "a", [])


def test_single_string_reference_rejected():
    with pytest.raises(TypeError, match="not a single str"):
        score("string_match_all", "1234567", "1234567")
