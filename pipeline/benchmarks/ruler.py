"""Seeded RULER-style synthetic tasks of a given token length.

Follows RULER (Hsieh et al., 2024, "RULER: What's the Real Context Size of
Your Long-Context Language Models?"): its task list (``scripts/synthetic.yaml``),
templates and answer prefixes (``scripts/data/synthetic/constants.py``) and
generators. The tasks:

- needle in a haystack (NIAH): ``niah_single_1`` to ``_3``, ``niah_multikey_1``
  to ``_3``, ``niah_multivalue`` and ``niah_multiquery``. Keys are
  adjective-noun pairs from the ``wonderwords`` word lists or UUIDs, values are
  7-digit numbers or UUIDs, and needles go at depths drawn from RULER's 40
  evenly spaced depths. Haystacks are noise sentences, essays, or distractor
  needles;
- variable tracking (``vt``): a chain of 5 variable assignments in noise;
- common words extraction (``cwe``): a numbered list in which 10 words occur
  30 times and the rest 3 times, after one worked example;
- frequent words extraction (``fwe``): coded words drawn from a Zipf
  distribution (alpha = 2).

Every task is scored with ``string_match_all``. The size of each sample
(sentences, words, or list entries) is searched so that
``prompt + answer_prefix`` has ``target_tokens`` tokens within ±2%.

Differences from RULER, made to meet that tolerance at short lengths or to
stay offline:

- noise haystacks grow by sentences rather than by whole repetitions;
- needles and chains in noise go at drawn depths rather than at random lines;
- essay sentences are split by a regular expression rather than by nltk;
- ``cwe`` draws all its words from ``wonderwords``.

Generation lengths are RULER's: 128 tokens for NIAH (four 7-digit numbers or
one UUID take 37 tokens with this model's tokenizer, which splits digits),
30 for ``vt``, 120 for ``cwe`` and 50 for ``fwe``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from pipeline.benchmarks.haystack import EssayHaystack, NoiseHaystack, insert_needles, read_essays
from pipeline.benchmarks.sample import Sample, text_after_context

logger = logging.getLogger(__name__)

NIAH_TEMPLATE = (
    "Some special magic {type_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_v} afterwards.\n{context}\n"
    "What are all the special magic {type_v} for {query} mentioned in the provided text?"
)
NIAH_ANSWER_PREFIX = " The special magic {type_v} for {query} mentioned in the provided text are"
NIAH_NEEDLE = "One of the special magic {type_v} for {key} is: {value}."

VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
VT_ANSWER_PREFIX = (
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
    "assigned the value {query}, they are: "
)
CWE_TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\n"
    "Question: What are the 10 most common words in the above list?"
)
CWE_ANSWER_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
    "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
    "What are the three most frequently appeared words in the above coded text?"
)
FWE_ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"

# RULER's depths in percent: np.round(np.linspace(0, 100, 40)).astype(int).
DEPTHS = tuple(round(100 * i / 39) for i in range(40))

LENGTH_TOLERANCE = 0.02
METRIC = "string_match_all"
NIAH_NEW_TOKENS = 128
VT_HOPS = 4
CWE_COMMON, CWE_COMMON_REPEATS, CWE_RARE_REPEATS = 10, 30, 3
FWE_ALPHA, FWE_WORD_LENGTH, FWE_TOKENS_PER_WORD_TYPE = 2.0, 6, 50


@dataclass(frozen=True)
class Built:
    """One sample's content at one size, before the template is filled.

    Attributes:
        context: Text for the template's ``{context}``.
        fields: The template's other fields (``query``, ``type_v``, ...).
        references: Strings the answer must contain.
        preamble: Text placed before the filled template (a worked example), or "".
        extra: Task-specific facts kept in the sample (needle depths, ...).
    """

    context: str
    fields: dict[str, str]
    references: tuple[str, ...]
    preamble: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Resources:
    """Inputs of the builders besides their random generator: the essay text and the token target."""

    essays_dir: str | Path | None
    target_tokens: int

    @functools.cached_property
    def essay(self) -> EssayHaystack:
        return EssayHaystack(read_essays(self.essays_dir))


# A builder draws one sample's content at a given size from a generator seeded by the sample id.
Builder = Callable[[random.Random, int, Resources], Built]


@dataclass(frozen=True)
class RulerTask:
    """A registered task: its template, generation length and builder.

    Attributes:
        haystack: ``noise``, ``essay``, ``needle`` or ``words``: what fills the context.
        unit: What the size counts, for logs and errors.
    """

    name: str
    template: str
    answer_prefix: str
    max_new_tokens: int
    build: Builder
    haystack: str
    unit: str


TASKS: dict[str, RulerTask] = {}


def register(task: RulerTask) -> RulerTask:
    TASKS[task.name] = task
    return task


# Needle in a haystack.


@dataclass(frozen=True)
class NiahSpec:
    """One NIAH configuration of RULER's synthetic.yaml."""

    haystack: str
    key_type: str = "words"
    value_type: str = "numbers"
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1
    depth: int | None = None  # a fixed depth in percent for a single needle (the sweep); None draws depths


def niah_text(spec: NiahSpec) -> tuple[str, str]:
    """Return the template and answer prefix, made singular for one value and one query as RULER does."""
    template, prefix = NIAH_TEMPLATE, NIAH_ANSWER_PREFIX
    if spec.num_values * spec.num_queries == 1:
        for old, new in (("Some", "A"), ("are all", "is"), ("are", "is")):
            template, prefix = template.replace(old, new), prefix.replace(old, new)
    return template, prefix


def random_word_key(rng: random.Random) -> str:
    """Return an ``adjective-noun`` key, as RULER's ``type_needle_k=words``."""
    adjectives, nouns = _word_lists()
    return f"{rng.choice(adjectives)}-{rng.choice(nouns)}"


def random_item(rng: random.Random, kind: str) -> str:
    """Draw one key or value: ``words`` (adjective-noun), ``numbers`` (7 digits) or ``uuids``."""
    if kind == "words":
        return random_word_key(rng)
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"Unknown needle type {kind!r}; expected words, numbers or uuids.")


def _distinct(rng: random.Random, kind: str, count: int, taken: set[str]) -> list[str]:
    items: list[str] = []
    while len(items) < count:
        item = random_item(rng, kind)
        if item not in taken:
            taken.add(item)
            items.append(item)
    return items


def build_niah(spec: NiahSpec, rng: random.Random, size: int, resources: Resources) -> Built:
    """Draw keys, values, needle depths and the query, then render ``size`` haystack units around them."""
    num_keys = max(spec.num_keys, spec.num_queries)
    taken: set[str] = set()
    keys = _distinct(rng, spec.key_type, num_keys, taken)
    values = [_distinct(rng, spec.value_type, spec.num_values, taken) for _ in keys]
    type_v = spec.value_type if spec.num_values * spec.num_queries > 1 else spec.value_type[:-1]
    needles = [
        NIAH_NEEDLE.format(type_v=spec.value_type, key=key, value=value)
        for key, key_values in zip(keys, values)
        for value in key_values
    ]
    rng.shuffle(needles)
    depths = [spec.depth] * len(needles) if spec.depth is not None else rng.sample(DEPTHS, len(needles))
    queried = rng.sample(range(num_keys), spec.num_queries)
    queries = [keys[index] for index in queried]
    query = queries[0] if len(queries) == 1 else ", ".join(queries[:-1]) + ", and " + queries[-1]
    references = tuple(value for index in queried for value in values[index])

    if spec.haystack == "noise":
        context = NoiseHaystack().render(size, needles, depths)
    elif spec.haystack == "essay":
        context = resources.essay.render(size, needles, depths)
    else:  # distractor needles with their own random keys and values, one per line
        lines = [
            NIAH_NEEDLE.format(type_v=spec.value_type, key=random_item(rng, spec.key_type),
                               value=random_item(rng, spec.value_type))
            for _ in range(size)
        ]
        context = "\n".join(insert_needles(lines, needles, depths))

    query_depths = [depths[needles.index(NIAH_NEEDLE.format(type_v=spec.value_type, key=keys[index], value=value))]
                    for index in queried for value in values[index]]
    return Built(
        context=context,
        fields={"type_v": type_v, "query": query},
        references=references,
        extra={"needle_depths": list(depths), "query_depth": query_depths[0], "query_depths": query_depths},
    )


NIAH_TASKS = {
    "niah_single_1": NiahSpec("noise"),
    "niah_single_2": NiahSpec("essay"),
    "niah_single_3": NiahSpec("essay", value_type="uuids"),
    "niah_multikey_1": NiahSpec("essay", num_keys=4),
    "niah_multikey_2": NiahSpec("needle"),
    "niah_multikey_3": NiahSpec("needle", key_type="uuids", value_type="uuids"),
    "niah_multivalue": NiahSpec("essay", num_values=4),
    "niah_multiquery": NiahSpec("essay", num_queries=4),
}
for _name, _spec in NIAH_TASKS.items():
    _template, _prefix = niah_text(_spec)
    register(RulerTask(
        name=_name, template=_template, answer_prefix=_prefix, max_new_tokens=NIAH_NEW_TOKENS,
        build=functools.partial(build_niah, _spec), haystack=_spec.haystack,
        unit={"noise": "sentences", "essay": "words", "needle": "distractor needles"}[_spec.haystack],
    ))


# Variable tracking.


def build_variable_tracking(rng: random.Random, size: int, resources: Resources) -> Built:
    """Hide the chain ``VAR A = 12345, VAR B = VAR A, ...`` of ``VT_HOPS`` hops in ``size`` noise sentences."""
    names: list[str] = []
    while len(names) < VT_HOPS + 1:
        name = "".join(rng.choices(string.ascii_uppercase, k=5))
        if name not in names:
            names.append(name)
    value = str(rng.randint(10000, 99998))
    chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]}" for j in range(VT_HOPS)]
    # The chain keeps its order; its statements go at sorted depths.
    depths = sorted(rng.sample(DEPTHS, len(chain)))
    context = NoiseHaystack().render(size, chain, depths)
    return Built(
        context=context,
        fields={"query": value, "num_v": str(len(chain))},
        references=tuple(names),
        extra={"chain_depths": depths},
    )


register(RulerTask(
    name="vt", template=VT_TEMPLATE, answer_prefix=VT_ANSWER_PREFIX, max_new_tokens=30,
    build=build_variable_tracking, haystack="noise", unit="sentences",
))


# Common words extraction.


def _numbered(words: list[str]) -> str:
    return " ".join(f"{index + 1}. {word}" for index, word in enumerate(words))


def _word_list(rng: random.Random, num_distinct: int, common_repeats: int, rare_repeats: int) -> tuple[str, list[str]]:
    """Return a shuffled numbered list in which ``CWE_COMMON`` words repeat more often, and those words."""
    chosen = rng.sample(_cwe_words(), num_distinct)
    common, rare = chosen[:CWE_COMMON], chosen[CWE_COMMON:]
    words = common * common_repeats + rare * rare_repeats
    rng.shuffle(words)
    return _numbered(words), common


def build_common_words(rng: random.Random, size: int, resources: Resources) -> Built:
    """Build a worked example, then a list of 10 common words and ``size`` rare ones.

    From 4096 target tokens up, common words occur 30 times and rare ones 3
    times, after an example of 40 words (10 and 3 times). Below, as in RULER,
    6 and 1 times, after an example of 20 words (3 and 1 times).
    """
    if resources.target_tokens >= 4096:
        example_words, example_repeats, repeats = 40, (10, 3), (CWE_COMMON_REPEATS, CWE_RARE_REPEATS)
    else:
        example_words, example_repeats, repeats = 20, (3, 1), (6, 1)
    example_list, example_answer = _word_list(rng, example_words, *example_repeats)
    example = CWE_TEMPLATE.format(context=example_list) + CWE_ANSWER_PREFIX + " " + _numbered(example_answer)
    context, common = _word_list(rng, CWE_COMMON + size, *repeats)
    return Built(context=context, fields={}, references=tuple(common), preamble=example)


register(RulerTask(
    name="cwe", template=CWE_TEMPLATE, answer_prefix=CWE_ANSWER_PREFIX, max_new_tokens=120,
    build=build_common_words, haystack="words", unit="rare words",
))


# Frequent words extraction.


def zeta(alpha: float, terms: int = 100_000) -> float:
    """Riemann zeta(alpha) for alpha > 1: a partial sum plus its Euler-Maclaurin tail."""
    partial = math.fsum(k**-alpha for k in range(1, terms))
    tail = terms ** (1 - alpha) / (alpha - 1) + 0.5 * terms**-alpha
    return partial + tail


def build_frequent_words(rng: random.Random, size: int, resources: Resources) -> Built:
    """``size`` coded words whose counts follow a Zipf law; the answer is the 2nd to 4th most frequent.

    As in RULER, the vocabulary has one type per 50 target tokens and its most
    frequent entry is the noise word "...".
    """
    vocabulary_size = max(resources.target_tokens // FWE_TOKENS_PER_WORD_TYPE, 5)
    vocabulary: set[str] = set()
    while len(vocabulary) < vocabulary_size:
        vocabulary.add("".join(rng.choices(string.ascii_lowercase, k=FWE_WORD_LENGTH)))
    ranked = sorted(vocabulary)
    rng.shuffle(ranked)
    ranked[0] = "..."
    normalizer = zeta(FWE_ALPHA)
    words = []
    for rank, word in enumerate(ranked, start=1):
        words += [word] * int(size * rank**-FWE_ALPHA / normalizer)  # Zipf count of this rank
    rng.shuffle(words)
    return Built(context=" ".join(words), fields={}, references=tuple(ranked[1:4]))


register(RulerTask(
    name="fwe", template=FWE_TEMPLATE, answer_prefix=FWE_ANSWER_PREFIX, max_new_tokens=50,
    build=build_frequent_words, haystack="words", unit="coded words",
))


# Word lists.


@functools.cache
def _read_word_list(name: str) -> tuple[str, ...]:
    # Entries with spaces (e.g. "ad hoc") are dropped, unlike RULER, so that every word is one token run.
    text = files("wonderwords.assets").joinpath(name).read_text(encoding="utf-8")
    return tuple(sorted({line.strip() for line in text.splitlines() if line.strip() and " " not in line}))


def _word_lists() -> tuple[tuple[str, ...], tuple[str, ...]]:
    return _read_word_list("adjectivelist.txt"), _read_word_list("nounlist.txt")


@functools.cache
def _cwe_words() -> list[str]:
    words = {*_read_word_list("nounlist.txt"), *_read_word_list("adjectivelist.txt"), *_read_word_list("verblist.txt")}
    return sorted(words)


# Generation and length fitting.


def count_tokens(text: str, tokenizer) -> int:
    """Count the tokens of ``text`` without special tokens, as RULER's ``text_to_tokens``."""
    return len(tokenizer.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class Fit:
    """A sample's content at the size chosen to meet the token target."""

    built: Built
    prompt: str
    answer_prefix: str
    size: int
    num_tokens: int


def render_prompt(task: RulerTask, built: Built) -> tuple[str, str]:
    """Fill the template; return the prompt and the answer prefix."""
    prompt = task.template.format(context=built.context, **built.fields)
    if built.preamble:
        prompt = built.preamble + "\n" + prompt
    return prompt, task.answer_prefix.format(**built.fields)


def fit_size(
    task: RulerTask, sample_id: str, target_tokens: int, tokenizer, resources: Resources
) -> Fit:
    """Binary-search the size that gives ``prompt + answer_prefix`` ``target_tokens`` tokens (±2%).

    Each size is built from a fresh ``random.Random(sample_id)``, so the chosen
    size's content does not depend on the search. The result has the largest
    size whose length is <= target, or the next size when that one is more than
    2% short. Raises ValueError when no size meets the tolerance.
    """
    fits: dict[int, Fit] = {}

    def measure(size: int) -> int:
        if size not in fits:
            built = task.build(random.Random(sample_id), size, resources)
            prompt, answer_prefix = render_prompt(task, built)
            fits[size] = Fit(built, prompt, answer_prefix, size, count_tokens(prompt + answer_prefix, tokenizer))
        return fits[size].num_tokens

    lowest, highest = target_tokens * (1 - LENGTH_TOLERANCE), target_tokens * (1 + LENGTH_TOLERANCE)
    if measure(0) > highest:
        raise ValueError(
            f"target_tokens={target_tokens} is too small for {task.name}: the prompt with no "
            f"{task.unit} already has {measure(0)} tokens."
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
    if not lowest <= measure(size) <= highest:
        raise ValueError(
            f"No size gives {task.name} a prompt within ±{LENGTH_TOLERANCE:.0%} of {target_tokens} tokens: "
            f"{low} {task.unit} give {measure(low)} and {high} give {measure(high)}. Pick a larger target_tokens."
        )
    return fits[size]


def fitted_sample(task: RulerTask, sample_id: str, fit: Fit, extra: dict) -> Sample:
    """Build the sample of a fitted prompt; chat template on, scored with ``METRIC``."""
    return Sample(
        task=task.name,
        sample_id=sample_id,
        prompt=fit.prompt,
        question=text_after_context(task.template, fit.built.fields),
        references=fit.built.references,
        metric=METRIC,
        max_new_tokens=task.max_new_tokens,
        use_chat_template=True,
        answer_prefix=fit.answer_prefix,
        extra=extra,
    )


SWEEP_TASK = "niah_sweep"
SWEEP_LENGTHS = (1024, 2048, 4096, 6144, 8000)
SWEEP_DEPTHS = tuple(round(100 * i / 9) for i in range(10))  # 0, 11, ..., 100


def sweep(
    tokenizer,
    lengths: tuple[int, ...] = SWEEP_LENGTHS,
    depths: tuple[int, ...] = SWEEP_DEPTHS,
    seed: int = 0,
    essays_dir: str | Path | None = None,
) -> list[Sample]:
    """Generate the needle-in-a-haystack sweep: one essay prompt per (length, depth), a single needle.

    The sample id ``niah_sweep-s{seed}-n{length}-d{depth}`` names the grid
    point, and ``extra`` contains ``target_tokens`` and ``depth``.
    """
    if not lengths or not depths:
        raise ValueError("The sweep needs at least one length and one depth.")
    base = TASKS["niah_single_2"]
    samples = []
    for length in lengths:
        resources = Resources(essays_dir, length)
        for depth in depths:
            if not 0 <= depth <= 100:
                raise ValueError(f"Sweep depth {depth} is outside [0, 100] percent.")
            spec = NiahSpec("essay", depth=depth)
            task = RulerTask(
                name=SWEEP_TASK, template=base.template, answer_prefix=base.answer_prefix,
                max_new_tokens=base.max_new_tokens, build=functools.partial(build_niah, spec),
                haystack="essay", unit="words",
            )
            sample_id = f"{SWEEP_TASK}-s{seed}-n{length}-d{depth}"
            fit = fit_size(task, sample_id, length, tokenizer, resources)
            extra = {"target_tokens": length, "depth": depth, "prompt_tokens": fit.num_tokens}
            samples.append(fitted_sample(task, sample_id, fit, extra))
    logger.info("Generated the NIAH sweep: %d lengths x %d depths (seed %d)", len(lengths), len(depths), seed)
    return samples


JSONL_FIELDS = ("index", "input", "outputs")


def load_jsonl(path: str | Path, task: str, num_samples: int | None = None) -> list[Sample]:
    """Read samples that RULER's own scripts generated: jsonl rows with ``index``, ``input`` and ``outputs``.

    ``input`` is the prompt without the answer prefix, which comes from the
    row's ``answer_prefix`` field when it has one. The question is the
    prompt's last line, where every RULER template places it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RULER file {path} not found; generate it with RULER's prepare.py or drop the option.")
    task_spec = TASKS.get(task)
    samples = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if num_samples is not None and len(samples) >= num_samples:
                break
            where = f"{path}, line {line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg}).") from None
            missing = [name for name in JSONL_FIELDS if name not in row]
            if missing:
                raise ValueError(f"{where}: missing field(s) {', '.join(missing)}; RULER rows have {JSONL_FIELDS}.")
            outputs = row["outputs"]
            if not isinstance(outputs, list) or not outputs or not all(isinstance(item, str) for item in outputs):
                raise ValueError(f"{where}: field 'outputs' must be a non-empty list of strings.")
            prompt = row["input"]
            question = "\n" + prompt.rsplit("\n", 1)[1] if "\n" in prompt else ""
            samples.append(
                Sample(
                    task=task,
                    sample_id=f"{task}-jsonl-{row['index']}",
                    prompt=prompt,
                    question=question,
                    references=tuple(outputs),
                    metric=METRIC,
                    max_new_tokens=task_spec.max_new_tokens if task_spec else NIAH_NEW_TOKENS,
                    answer_prefix=row.get("answer_prefix", ""),
                    extra={"length": row.get("length")},
                )
            )
    if num_samples is not None and len(samples) < num_samples:
        raise ValueError(f"{path} has {len(samples)} rows, fewer than the {num_samples} requested.")
    logger.info("Read %d %s samples from %s", len(samples), task, path)
    return samples


def sweep_point(sample_id: str) -> tuple[int, int]:
    """Return the (target length, depth) of a sweep sample from its id."""
    match = re.fullmatch(rf"{SWEEP_TASK}-s\d+-n(\d+)-d(\d+)", sample_id)
    if match is None:
        raise ValueError(f"{sample_id!r} is not a sweep sample id ({SWEEP_TASK}-s<seed>-n<length>-d<depth>).")
    return int(match.group(1)), int(match.group(2))


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
    resources = Resources(essays_dir, target_tokens)

    samples = []
    for index in range(num_samples):
        sample_id = f"{task}-s{seed}-{index}"
        fit = fit_size(spec, sample_id, target_tokens, tokenizer, resources)
        logger.debug("%s: %d %s, %d tokens", sample_id, fit.size, spec.unit, fit.num_tokens)
        sizes = {"haystack": spec.haystack, "haystack_size": fit.size, "prompt_tokens": fit.num_tokens}
        samples.append(fitted_sample(spec, sample_id, fit, {**fit.built.extra, **sizes}))
    logger.info("Generated %d %s samples of about %d tokens (seed %d)", num_samples, task, target_tokens, seed)
    return samples
