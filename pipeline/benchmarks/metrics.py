"""Per-sample scores from 0 to 100 for RULER and LongBench predictions.

* ``string_match_all`` (RULER, Hsieh et al., 2024): 100 * (number of references
  contained in the prediction, case-insensitive) / (number of references).
* ``qa_f1`` (LongBench, Bai et al., 2024, metrics.py): token-level
  F1 = 2PR / (P + R) after LongBench's ``normalize_answer``.
* ``rouge`` (LongBench metrics.py): ROUGE-L F1 from the ``rouge`` package 1.0.1,
  which splits sentences at "." and scores summary-level union LCS over sets of
  whitespace-separated, case-sensitive words.
* ``classification`` (LongBench): the class names from ``all_classes`` found
  in the prediction, minus those that are part of the reference without being
  it; 100 / (number left) if the reference is among them, else 0.
* ``retrieval`` (LongBench): the share of the numbers in the prediction that
  equal the reference's paragraph number ("Paragraph N").
* ``count`` (LongBench): the share of the numbers in the prediction that equal
  the reference count.
* ``code_sim`` (LongBench): the similarity of the prediction's first line
  without a backtick, "#" or "//" to the reference, as the ``fuzzywuzzy``
  package's ``fuzz.ratio`` computes it in LongBench's environment (which lacks
  ``python-Levenshtein``): ``difflib.SequenceMatcher`` ratio from the standard
  library, rounded to a whole percent, 100 for equal strings and 0 when one of
  them is empty.

The LongBench metrics score each reference and keep the maximum, as LongBench
eval.py does. Predictions of some tasks are cut to their first line first
(``postprocess``).
"""

from __future__ import annotations

import difflib
import logging
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from rouge import Rouge

logger = logging.getLogger(__name__)

# LongBench eval.py keeps only the first line of predictions for these tasks.
FIRST_LINE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht"})

# LongBench's Chinese metrics, which this English-only pipeline does not implement.
UNIMPLEMENTED_LONGBENCH_METRICS = ("qa_f1_zh", "retrieval_zh", "rouge_zh")


def postprocess(task: str, prediction: str) -> str:
    """Return the first line (after leading newlines) for LongBench's few-shot tasks, else ``prediction``."""
    if task in FIRST_LINE_TASKS:
        return prediction.lstrip("\n").split("\n")[0]
    return prediction


def score(metric: str, prediction: str, references: Sequence[str], **extra) -> float:
    """Score one prediction from 0 to 100 with ``metric``.

    ``string_match_all`` uses all references together. The other metrics
    return the maximum over references. ``extra`` carries task fields such as
    LongBench's ``all_classes``, which ``classification`` needs.
    """
    if metric not in SUPPORTED_METRICS:
        supported = ", ".join(SUPPORTED_METRICS)
        if metric in UNIMPLEMENTED_LONGBENCH_METRICS:
            raise ValueError(
                f"Metric {metric!r} scores LongBench's Chinese tasks, which are not supported. "
                f"Supported metrics: {supported}."
            )
        raise ValueError(f"Unknown metric {metric!r}. Supported metrics: {supported}.")
    if isinstance(references, str):
        raise TypeError("references must be a sequence of strings, not a single str.")
    if len(references) == 0:
        raise ValueError(f"Cannot score with metric {metric!r}: references is empty.")

    if metric == "string_match_all":
        return string_match_all(prediction, references)
    if metric == "classification":
        classes = extra.get("all_classes")
        if not classes:
            raise ValueError("The classification metric needs the task's all_classes; the sample has none.")
        return max(classification(prediction, reference, classes) for reference in references)
    scorer = _PER_REFERENCE_METRICS[metric]
    return max(scorer(prediction, reference) for reference in references)


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    """Return 100 times the share of references found in the prediction, ignoring case."""
    found = sum(reference.lower() in prediction.lower() for reference in references)
    return 100.0 * found / len(references)


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop ASCII punctuation and the articles a/an/the, and collapse whitespace (LongBench)."""
    text = text.lower()
    text = "".join(character for character in text if character not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def qa_f1(prediction: str, reference: str) -> float:
    """Return 100 times the token F1 of the normalized prediction against one reference."""
    prediction_tokens = normalize_answer(prediction).split()
    reference_tokens = normalize_answer(reference).split()
    num_same = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(reference_tokens)
    return 100.0 * 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """Return 100 times the ROUGE-L F1 of the ``rouge`` package for one reference.

    As in LongBench, an empty prediction and any error raised by the package
    score 0. Errors include an empty reference and RecursionError when a
    sentence (text between periods) has more than about 1,000 words.
    The package's F1 has 1e-8 added to its denominator, so identical texts
    score just under 100.
    """
    if not prediction.strip():
        return 0.0
    try:
        scores = _ROUGE.get_scores([prediction], [reference], avg=True)
    except Exception as error:  # LongBench catches every error of the package here.
        logger.warning(
            "rouge failed (%s: %s) on a %d-character prediction and a %d-character reference. Scored 0.",
            type(error).__name__,
            error,
            len(prediction),
            len(reference),
        )
        return 0.0
    return 100.0 * scores["rouge-l"]["f"]


_ROUGE = Rouge()


def classification(prediction: str, reference: str, all_classes: Sequence[str]) -> float:
    """Return 100 / (matched classes) if the reference class is matched, else 0.

    A class is matched when its name occurs in the prediction. Matches that
    occur inside the reference's name without being it are then dropped, by
    removing from the list while iterating over it as LongBench does, so that
    of two such adjacent matches the second stays.
    """
    matches = [name for name in all_classes if name in prediction]
    for name in matches:
        if name in reference and name != reference:
            matches.remove(name)
    return 100.0 / len(matches) if reference in matches else 0.0


def _number_share(prediction: str, target: str) -> float:
    """Return 100 times the share of the numbers (digit runs) in the prediction that equal ``target``."""
    numbers = re.findall(r"\d+", prediction)
    if not numbers:
        return 0.0
    return 100.0 * sum(number == target for number in numbers) / len(numbers)


def retrieval(prediction: str, reference: str) -> float:
    """Return the share of the prediction's numbers that name the reference's paragraph."""
    match = re.search(r"Paragraph (\d+)", reference)
    if match is None:
        raise ValueError(f"Retrieval reference {reference!r:.60} names no paragraph ('Paragraph N').")
    return _number_share(prediction, match.group(1))


def count(prediction: str, reference: str) -> float:
    """Return the share of the prediction's numbers that equal the reference count."""
    return _number_share(prediction, reference)


def code_similarity(prediction: str, reference: str) -> float:
    """Return fuzzywuzzy's ratio of the first code line of the prediction to the reference (see the module)."""
    line = ""
    for candidate in prediction.lstrip("\n").split("\n"):
        if "`" not in candidate and "#" not in candidate and "//" not in candidate:
            line = candidate
            break
    if line == reference:
        return 100.0
    if not line or not reference:
        return 0.0
    return float(int(round(100 * difflib.SequenceMatcher(None, line, reference).ratio())))


# Metrics scored per reference, keeping the maximum.
_PER_REFERENCE_METRICS: dict[str, Callable[[str, str], float]] = {
    "qa_f1": qa_f1,
    "rouge": rouge_l,
    "retrieval": retrieval,
    "count": count,
    "code_sim": code_similarity,
}
SUPPORTED_METRICS = ("classification", "code_sim", "count", "qa_f1", "retrieval", "rouge", "string_match_all")
