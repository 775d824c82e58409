"""Task names and descriptions as the paper prints them.

Table columns use short labels: the abbreviations of RULER (Hsieh et al., 2024)
and of the LongBench tables in SnapKV (Li et al., 2024).
A task run at several prompt lengths appears once per length, under the key
``TASK-ctxN``, and its label gains the length.
"""

from __future__ import annotations

from pipeline.benchmarks import longbench

LENGTH_SEPARATOR = "-ctx"

TASK_LABELS = {
    "niah_single_1": "S-NIAH-1",
    "niah_single_2": "S-NIAH-2",
    "niah_single_3": "S-NIAH-3",
    "niah_multikey_1": "MK-NIAH-1",
    "niah_multikey_2": "MK-NIAH-2",
    "niah_multikey_3": "MK-NIAH-3",
    "niah_multivalue": "MV-NIAH",
    "niah_multiquery": "MQ-NIAH",
    "vt": "VT",
    "cwe": "CWE",
    "fwe": "FWE",
    "niah_sweep": "NIAH sweep",
    "narrativeqa": "NrtvQA",
    "qasper": "Qasper",
    "multifieldqa_en": "MF-en",
    "hotpotqa": "HotpotQA",
    "2wikimqa": "2WikiMQA",
    "musique": "Musique",
    "gov_report": "GovReport",
    "qmsum": "QMSum",
    "multi_news": "MultiNews",
    "trec": "TREC",
    "triviaqa": "TriviaQA",
    "samsum": "SAMSum",
    "passage_count": "PCount",
    "passage_retrieval_en": "PRe",
    "lcc": "Lcc",
    "repobench-p": "RB-P",
}

# Content of each RULER prompt, completing the sentence "<label> ...".
RULER_DESCRIPTIONS = {
    "niah_single_1": "hides one number in repeated filler sentences",
    "niah_single_2": "hides one number in essay text",
    "niah_single_3": "hides one UUID in essay text",
    "niah_multikey_1": "hides four key-number pairs in essay text and asks for one of them",
    "niah_multikey_2": "hides one key-number pair among lines of distractor pairs",
    "niah_multikey_3": "hides one pair of UUIDs among lines of distractor UUID pairs",
    "niah_multivalue": "hides four numbers under one key in essay text and asks for all of them",
    "niah_multiquery": "hides four key-number pairs in essay text and asks for all four",
    "vt": "hides a chain of four variable assignments in filler sentences and asks for every variable "
    "that holds the chain's value",
    "cwe": "lists ten words thirty times each among rare words and asks for the ten most common",
    "fwe": "asks for the three most frequent words of a coded text whose word counts follow a Zipf law",
}


# Table 1's columns: RULER's task categories (Hsieh et al., 2024) and LongBench's (Bai et al., 2024).
RULER_CATEGORIES = {
    "retrieval": ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                  "niah_multikey_3", "niah_multivalue", "niah_multiquery"),
    "multi-hop tracing": ("vt",),
    "aggregation": ("cwe", "fwe"),
}
CATEGORY_LABELS = {
    "retrieval": "Retrieval",
    "multi-hop tracing": "Tracing",
    "aggregation": "Aggregation",
    "single-doc QA": "Single-Doc QA",
    "multi-doc QA": "Multi-Doc QA",
    "summarization": "Summarization",
    "few-shot": "Few-shot",
    "synthetic": "Synthetic",
    "code": "Code",
}


def task_category(key: str) -> str:
    """Return the category of a table key: a RULER category, else LongBench's."""
    task = base_name(key)
    for name, tasks in RULER_CATEGORIES.items():
        if task in tasks:
            return name
    return longbench.category(task)


def task_key(task: str, context_tokens: int | None, several_lengths: bool) -> str:
    """Return the table key of a task: its name, or ``TASK-ctxN`` when the results hold it at several lengths."""
    if several_lengths and context_tokens is not None:
        return f"{task}{LENGTH_SEPARATOR}{context_tokens}"
    return task


def base_name(key: str) -> str:
    """Return the task behind a table key."""
    return key.split(LENGTH_SEPARATOR)[0]


def task_label(key: str) -> str:
    """Return the display label of a table key: ``MK-NIAH-1`` or ``MK-NIAH-1 (8k)``."""
    task, _, length = key.partition(LENGTH_SEPARATOR)
    label = TASK_LABELS.get(task, task)
    if not length:
        return label
    tokens = int(length)
    return f"{label} ({tokens // 1024}k)" if tokens % 1024 == 0 else f"{label} ({tokens})"
