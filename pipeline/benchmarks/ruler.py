"""Seeded RULER-style needle-in-a-haystack prompts of a given token length.

Follows RULER (Hsieh et al., 2024): the task templates of its Table 7 and the
generator in its ``scripts/data/synthetic/niah.py``. Keys are
adjective-noun pairs from the ``wonderwords`` word lists, values are 7-digit
numbers, and needles go at sentence boundaries at depths drawn from RULER's 40
evenly spaced depths. The haystack size is searched per sample so that
``prompt + answer_prefix`` has ``target_tokens`` tokens within ±2%.

Each task is one function in ``TASKS`` that draws its needles, depths and
query from a ``random.Random``. ``generate`` does the rest.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from pipeline.benchmarks.haystack import EssayHaystack, NoiseHaystack, read_essays
from pipeline.benchmarks.sample import Sample, text_after_context

logger = logging.getLogger(__name__)

NIAH_TEMPLATE = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards.\n{context}\n"
    "What is the special magic number for {query} mentioned in the provided text?"
)
NIAH_ANSWER_PREFIX = " The special magic number for {query} mentioned in the provided text is"
NIAH_NEEDLE = "One of the special magic numbers for {key} is: {value}."

# RULER's depths in percent: np.round(np.linspace(0, 100, 40)).astype(int).
DEPTHS = tuple(round(100 * i / 39) for i in range(40))

LENGTH_TOLERANCE = 0.02
METRIC = "string_match_all"
MAX_NEW_TOKENS = 32


@dataclass(frozen=True)
class NeedleDraw:
    """The random choices of one sample, fixed before its haystack size is searched.

    ``fields`` fills the template and answer prefix besides ``{context}``.
    """

    needles: tuple[str, ...]
    depths: tuple[int, ...]
    fields: dict[str, str]
    references: tuple[str, ...]
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RulerTask:
    """A registered task: its haystack kind, prompt text and needle-drawing function."""

    name: str
    haystack: str
    draw: Callable[[random.Random], NeedleDraw]
    template: str = NIAH_TEMPLATE
    answer_prefix: str = NIAH_ANSWER_PREFIX


TASKS: dict[str, RulerTask] = {}


def register(name: str, haystack: str, **prompt_text: str):
    """Register the decorated needle-drawing function as RULER task ``name``."""
    if haystack not in ("noise", "essay"):
        raise ValueError(f"Unknown haystack {haystack!r}. Expected 'noise' or 'essay'.")

    def decorate(draw: Callable[[random.Random], NeedleDraw]):
        TASKS[name] = RulerTask(name, haystack, draw, **prompt_text)
        return draw

    return decorate


@register("niah_single_1", haystack="noise")
def niah_single_1(rng: random.Random) -> NeedleDraw:
    """Draw one needle with a word key and a 7-digit value, for the noise haystack."""
    return draw_niah(rng, num_keys=1)


@register("niah_multikey_1", haystack="essay")
def niah_multikey_1(rng: random.Random) -> NeedleDraw:
    """Draw four needles with distinct word keys for the essay haystack, and query one of them."""
    return draw_niah(rng, num_keys=4)


def draw_niah(rng: random.Random, num_keys: int) -> NeedleDraw:
    """Draw ``num_keys`` needles with distinct keys and values, and query one of them."""
    keys: list[str] = []
    while len(keys) < num_keys:
        key = random_word_key(rng)
        if key not in keys:
            keys.append(key)
    values: list[str] = []
    while len(values) < num_keys:
        value = str(rng.randint(10**6, 10**7 - 1))
        if value not in values:
            values.append(value)

    depths = tuple(rng.sample(DEPTHS, num_keys))
    query_index = rng.randrange(num_keys)
    needles = tuple(NIAH_NEEDLE.format(key=key, value=value) for key, value in zip(keys, values))
    return NeedleDraw(
        needles=needles,
        depths=depths,
        fields={"query": keys[query_index]},
        references=(values[query_index],),
        extra={"needle_depths": list(depths), "query_depth": depths[query_index]},
    )


def random_word_key(rng: random.Random) -> str:
    """Return an ``adjective-noun`` key, as RULER's ``type_needle_k=words``."""
    adjectives, nouns = _word_lists()
    return f"{rng.choice(adjectives)}-{rng.choice(nouns)}"


@functools.cache
def _word_lists() -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Entries with spaces (e.g. "ad hoc") are dropped, unlike RULER, so that keys are one word.
    assets = files("wonderwords.assets")

    def read(name: str) -> tuple[str, ...]:
        words = {line.strip() for line in assets.joinpath(name).read_text(encoding="utf-8").splitlines()}
        return tuple(sorted(word for word in words if word and " " not in word))

    return read("adjectivelist.txt"), read("nounlist.txt")


def count_tokens(text: str, tokenizer) -> int:
    """Count the tokens of ``text`` without special tokens, as RULER's ``text_to_tokens``."""
    return len(tokenizer.encode(text, add_special_tokens=False))


def generate(
    task: str,
    num_samples: int,
    target_tokens: int,
    tokenizer,
    seed: int = 0,
    essays_dir: str | Path | None = None,
) -> list[Sample]:
    """Generate ``num_samples`` prompts of ``task`` with ``target_tokens`` tokens (±2%).

    Sample ``index`` draws from ``random.Random(sample_id)``, so the same seed
    gives identical samples and a sample does not depend on ``num_samples``.
    ``essays_dir`` is read only by essay-haystack tasks (see ``read_essays``).
    """
    if task not in TASKS:
        raise ValueError(f"Unknown RULER task {task!r}. Supported tasks: {', '.join(sorted(TASKS))}.")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be >= 1, got {target_tokens}.")
    spec = TASKS[task]
    haystack = NoiseHaystack() if spec.haystack == "noise" else EssayHaystack(read_essays(essays_dir))

    samples = []
    for index in range(num_samples):
        sample_id = f"{task}-s{seed}-{index}"
        draw = spec.draw(random.Random(sample_id))
        answer_prefix = spec.answer_prefix.format(**draw.fields)
        fit = fit_haystack(spec, draw, haystack, answer_prefix, target_tokens, tokenizer)
        logger.debug("%s: %d haystack %s, %d tokens", sample_id, fit.size, haystack.unit, fit.num_tokens)
        samples.append(
            Sample(
                task=task,
                sample_id=sample_id,
                prompt=fit.prompt,
                question=text_after_context(spec.template, draw.fields),
                references=draw.references,
                metric=METRIC,
                max_new_tokens=MAX_NEW_TOKENS,
                use_chat_template=True,
                answer_prefix=answer_prefix,
                extra={
                    **draw.extra,
                    "haystack": haystack.name,
                    "haystack_size": fit.size,
                    "prompt_tokens": fit.num_tokens,
                },
            )
        )
    logger.info("Generated %d %s samples of about %d tokens (seed %d)", num_samples, task, target_tokens, seed)
    return samples


@dataclass(frozen=True)
class HaystackFit:
    """A prompt whose haystack size was chosen to meet a token target."""

    prompt: str
    size: int
    num_tokens: int


def fit_haystack(
    spec: RulerTask,
    draw: NeedleDraw,
    haystack: NoiseHaystack | EssayHaystack,
    answer_prefix: str,
    target_tokens: int,
    tokenizer,
) -> HaystackFit:
    """Binary-search the haystack size that gives the prompt ``target_tokens`` tokens (±2%).

    The length counts ``prompt + answer_prefix``. The result has the largest
    size whose length is <= target, or the next size when that one is more than
    2% short. Raises ValueError when no size meets the ±2% tolerance.
    """
    lengths: dict[int, tuple[int, str]] = {}

    def measure(size: int) -> int:
        if size not in lengths:
            context = haystack.render(size, draw.needles, draw.depths)
            prompt = spec.template.format(context=context, **draw.fields)
            lengths[size] = (count_tokens(prompt + answer_prefix, tokenizer), prompt)
        return lengths[size][0]

    lowest, highest = target_tokens * (1 - LENGTH_TOLERANCE), target_tokens * (1 + LENGTH_TOLERANCE)
    if measure(0) > highest:
        raise ValueError(
            f"target_tokens={target_tokens} is too small for {spec.name}: the prompt with an empty "
            f"haystack already has {measure(0)} tokens."
        )

    # Invariant: measure(low) <= target_tokens < measure(high).
    low, high = 0, 64
    while measure(high) <= target_tokens:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if measure(middle) <= target_tokens:
            low = middle
        else:
            high = middle

    size = low if measure(low) >= lowest else high
    num_tokens = measure(size)
    if not lowest <= num_tokens <= highest:
        raise ValueError(
            f"No haystack size gives {spec.name} a prompt within ±{LENGTH_TOLERANCE:.0%} of "
            f"{target_tokens} tokens: {low} {haystack.unit} give {measure(low)} and {high} give "
            f"{measure(high)}. Pick a larger target_tokens."
        )
    return HaystackFit(prompt=lengths[size][1], size=size, num_tokens=num_tokens)
