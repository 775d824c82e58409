"""Loader for LongBench v1 rows in the official jsonl format.

LongBench (Bai et al., 2024, "LongBench: A Bilingual, Multitask Benchmark for
Long Context Understanding") ships one ``{task}.jsonl`` per task, with the
fields ``input``, ``context``, ``answers``, ``length``, ``dataset``,
``language``, ``all_classes`` and ``_id``, and two config files:
``dataset2prompt.json`` (prompt templates, filled with ``str.format(**row)``)
and ``dataset2maxlen.json`` (max generation length). The metric names, the
tasks run without a chat template and the middle truncation follow its
``pred.py`` and ``eval.py`` (THUDM/LongBench, LongBench/ directory).

LongBench-E files are named ``{task}_e.jsonl``: a task name with the ``_e``
suffix reads them with the base task's prompt, length and metric, and its
scores are also reported by length bin (``length_bin``).
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

from pipeline.benchmarks.sample import Sample, text_after_context

logger = logging.getLogger(__name__)

# Environment variables that the command line reads for the two directories.
DATA_DIR_ENV = "LONGBENCH_DIR"
CONFIG_DIR_ENV = "LONGBENCH_CONFIG"

PROMPT_CONFIG = "dataset2prompt.json"
MAXLEN_CONFIG = "dataset2maxlen.json"

# LongBench eval.py's dataset2metric, with each function named without "_score".
TASK_METRICS = {
    "narrativeqa": "qa_f1",
    "qasper": "qa_f1",
    "multifieldqa_en": "qa_f1",
    "multifieldqa_zh": "qa_f1_zh",
    "hotpotqa": "qa_f1",
    "2wikimqa": "qa_f1",
    "musique": "qa_f1",
    "dureader": "rouge_zh",
    "gov_report": "rouge",
    "qmsum": "rouge",
    "multi_news": "rouge",
    "vcsum": "rouge_zh",
    "trec": "classification",
    "triviaqa": "qa_f1",
    "samsum": "rouge",
    "lsht": "classification",
    "passage_retrieval_en": "retrieval",
    "passage_count": "count",
    "passage_retrieval_zh": "retrieval_zh",
    "lcc": "code_sim",
    "repobench-p": "code_sim",
}

# LongBench pred.py skips the chat template for these few-shot and code tasks.
NO_CHAT_TEMPLATE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"})

# Every row needs these, besides the fields its prompt template uses.
REQUIRED_FIELDS = ("_id", "answers")

E_SUFFIX = "_e"

# The six LongBench categories of the paper's Table 1 (English tasks and their Chinese counterparts).
CATEGORIES = {
    "single-doc QA": ("narrativeqa", "qasper", "multifieldqa_en", "multifieldqa_zh"),
    "multi-doc QA": ("hotpotqa", "2wikimqa", "musique", "dureader"),
    "summarization": ("gov_report", "qmsum", "multi_news", "vcsum"),
    "few-shot": ("trec", "triviaqa", "samsum", "lsht"),
    "synthetic": ("passage_count", "passage_retrieval_en", "passage_retrieval_zh"),
    "code": ("lcc", "repobench-p"),
}


def base_task(task: str) -> str:
    """Return the LongBench task behind a LongBench-E name (``multi_news_e`` -> ``multi_news``)."""
    if task.endswith(E_SUFFIX) and task.removesuffix(E_SUFFIX) in TASK_METRICS:
        return task.removesuffix(E_SUFFIX)
    return task


def category(task: str) -> str:
    """Return the LongBench category of a task or its LongBench-E variant."""
    base = base_task(task)
    for name, tasks in CATEGORIES.items():
        if base in tasks:
            return name
    raise ValueError(f"LongBench task {task!r} has no category; known tasks: {', '.join(sorted(TASK_METRICS))}.")


def length_bin(length: int) -> str:
    """Return LongBench-E's length bin of a row's ``length`` field: 0-4k, 4-8k or 8k+."""
    if length < 4000:
        return "0-4k"
    return "4-8k" if length < 8000 else "8k+"


def load(
    task: str,
    data_dir: str | Path,
    config_dir: str | Path | None = None,
    num_samples: int | None = None,
) -> list[Sample]:
    """Load the first ``num_samples`` rows (all when None) of ``{data_dir}/{task}.jsonl``.

    ``config_dir`` defaults to ``{data_dir}/config``. Raises FileNotFoundError
    for a missing directory or file and ValueError for invalid rows or configs.
    """
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 or None (all rows), got {num_samples}.")
    data_dir = Path(data_dir).expanduser()
    config_dir = data_dir / "config" if config_dir is None else Path(config_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"LongBench data directory {data_dir} not found. Set {DATA_DIR_ENV} to the directory "
            f"that contains {task}.jsonl (from LongBench v1's data.zip)."
        )

    file_task, task = task, base_task(task)
    template = _read_config(config_dir, PROMPT_CONFIG, task)
    max_new_tokens = _read_config(config_dir, MAXLEN_CONFIG, task)
    if not isinstance(template, str):
        raise ValueError(f"{config_dir / PROMPT_CONFIG}: the template of {task!r} must be a string.")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(
            f"{config_dir / MAXLEN_CONFIG}: the max length of {task!r} must be a positive integer, "
            f"got {max_new_tokens!r}."
        )
    if task not in TASK_METRICS:
        raise ValueError(
            f"LongBench task {task!r} is in the configs but has no metric here. "
            f"Known tasks: {', '.join(sorted(TASK_METRICS))}."
        )
    metric = TASK_METRICS[task]
    required = _required_fields(template, metric, config_dir / PROMPT_CONFIG, task)

    path = data_dir / f"{file_task}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"LongBench data file {path} not found. Set {DATA_DIR_ENV} to the directory that "
            f"contains {file_task}.jsonl (from LongBench v1's data.zip)."
        )

    samples = []
    for line_number, row in _read_rows(path, num_samples):
        samples.append(_row_to_sample(row, task, template, metric, max_new_tokens, required, path, line_number))
    logger.info("Loaded %d %s rows from %s", len(samples), task, path)
    return samples


def count_rows(task: str, data_dir: str | Path) -> int:
    """Number of rows in ``{data_dir}/{task}.jsonl``, read without parsing them."""
    path = Path(data_dir).expanduser() / f"{task}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"LongBench data file {path} not found. Set {DATA_DIR_ENV} to the directory that "
            f"contains {task}.jsonl (from LongBench v1's data.zip)."
        )
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def _read_config(config_dir: Path, name: str, task: str):
    path = config_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"LongBench config file {path} not found. Set {CONFIG_DIR_ENV} to the directory with "
            f"LongBench v1's {PROMPT_CONFIG} and {MAXLEN_CONFIG} (its config/ folder)."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error}). Restore the file from LongBench v1.") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object mapping task names to values.")
    if task not in config:
        raise ValueError(
            f"Task {task!r} is missing from {path}. Tasks there: {', '.join(sorted(config))}. "
            f"Add it, or set {CONFIG_DIR_ENV} to a config directory that has it."
        )
    return config[task]


def _required_fields(template: str, metric: str, config_path: Path, task: str) -> tuple[str, ...]:
    try:
        template_fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ValueError(f"{config_path}: the template of {task!r} is not a valid format string ({error}).") from error
    for name in template_fields:
        if not name.isidentifier():
            raise ValueError(
                f"{config_path}: the template of {task!r} has the placeholder {{{name}}}. "
                "Only plain field names such as {context} and {input} are supported."
            )
    # LongBench's classification metric scores against the row's class list.
    extra = ("all_classes",) if metric == "classification" else ()
    return tuple(dict.fromkeys((*REQUIRED_FIELDS, *extra, *template_fields)))


def _read_rows(path: Path, num_samples: int | None):
    """Yield ``(line_number, row)`` for the first ``num_samples`` non-blank lines."""
    count = 0
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if num_samples is not None and count >= num_samples:
                return
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}, line {line_number}: invalid JSON ({error.msg} at column {error.colno}). "
                    "Fix or remove that line, or download the file again."
                ) from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {line_number}: expected a JSON object, got {type(row).__name__}.")
            count += 1
            yield line_number, row


def _row_to_sample(
    row: dict,
    task: str,
    template: str,
    metric: str,
    max_new_tokens: int,
    required: tuple[str, ...],
    path: Path,
    line_number: int,
) -> Sample:
    where = f"{path}, line {line_number}"
    for name in required:
        if name not in row:
            raise ValueError(
                f"{where}: missing field {name!r}. LongBench v1 rows have input, context, answers, "
                "length, dataset, language, all_classes and _id."
            )
    answers = row["answers"]
    if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
        raise ValueError(f"{where}: field 'answers' must be a list of strings, got {answers!r:.80}.")
    if not isinstance(row["_id"], str):
        raise ValueError(f"{where}: field '_id' must be a string, got {row['_id']!r}.")

    return Sample(
        task=task,
        sample_id=row["_id"],
        prompt=template.format(**row),
        question=text_after_context(template, row),
        references=tuple(answers),
        metric=metric,
        max_new_tokens=max_new_tokens,
        use_chat_template=task not in NO_CHAT_TEMPLATE_TASKS,
        keep_references=False,
        extra={"all_classes": row.get("all_classes"), "length": row.get("length")},
    )


def truncate_middle(text: str, tokenizer, max_tokens: int) -> tuple[str, bool]:
    """Cut the middle of ``text`` down to ``max_tokens`` tokens. Return the text and whether it was cut.

    As LongBench pred.py: when the text has more than ``max_tokens`` tokens, keep
    the first and the last ``max_tokens // 2`` tokens and decode each half
    without special tokens. Unlike pred.py, the count excludes special tokens
    (e.g. BOS), so the chat template and special tokens need their own budget.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2 to keep a head and a tail, got {max_tokens}.")
    token_ids = tokenizer.encode(text, add_special_tokens=False)
    if len(token_ids) <= max_tokens:
        return text, False
    # NOTE: re-encoding the joined halves can give a few tokens more or less than
    # 2 * half, because tokens may merge differently at the cut.
    half = max_tokens // 2
    head = tokenizer.decode(token_ids[:half], skip_special_tokens=True)
    tail = tokenizer.decode(token_ids[-half:], skip_special_tokens=True)
    return head + tail, True
