"""The unit of evaluation that every benchmark loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One prompt with what is needed to generate and score its answer.

    Attributes:
        task: Task name, e.g. ``niah_single_1`` or ``multi_news``.
        sample_id: Stable id: the LongBench ``_id`` or ``{task}-s{seed}-{index}``.
        prompt: The full prompt text, before any chat template.
        question: The end of ``prompt`` that follows the context: the question and
            any closing instruction. The context protocol feeds it after
            compression. Empty when the task has no text after its context.
        references: Reference answers used by the task's metric.
        metric: Metric name understood by ``pipeline.benchmarks.metrics.score``.
        max_new_tokens: Greedy generation length for this task.
        use_chat_template: Whether the prompt is wrapped in the model's chat template.
        answer_prefix: Text placed after the prompt (after the chat template's
            assistant header when one is used) that the answer continues, as RULER does.
        keep_references: False for dataset rows whose text must not be committed
            (LongBench): results then store the id and the score, not the references.
        extra: Task-specific fields kept for scoring (e.g. LongBench ``all_classes``).
    """

    task: str
    sample_id: str
    prompt: str
    question: str
    references: tuple[str, ...]
    metric: str
    max_new_tokens: int
    use_chat_template: bool = True
    answer_prefix: str = ""
    keep_references: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompt.endswith(self.question):
            raise ValueError(f"{self.sample_id}: the question must be the end of the prompt.")


def text_after_context(template: str, fields: dict) -> str:
    """Fill the part of ``template`` that follows its ``{context}`` field; empty without one."""
    _, marker, tail = template.partition("{context}")
    return tail.format(**fields) if marker else ""
