"""Run the grid: tasks x protocols x methods x budgets, one prefill per prompt and protocol.

For each task the runner finds the cells without a valid result file. For
every sample and protocol it prefills once, derives each pending cell's cache
from that prefill, checks that the cache was compressed to the method's
schedule, decodes the variants whose caches have equal shapes as one batch,
and scores. A cell's file is written atomically once all its samples are done,
so a rerun skips finished cells and never reads a half-written file.

Protocols:
    prompt: prefill and compress the whole prompt, question included, as the
        LongBench and SnapKV evaluations do.
    context: prefill and compress the context only, then feed the question
        through the compressed cache, so the compression cannot see it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.benchmarks import longbench, metrics, ruler
from pipeline.benchmarks.haystack import describe_essays
from pipeline.benchmarks.sample import Sample
from pipeline.experiments import provenance
from pipeline.experiments.schema import (
    PROTOCOLS,
    SCHEMA_VERSION,
    CellConfig,
    CellResult,
    ModelInfo,
    ResultsError,
    SampleResult,
    Timing,
    cell_filename,
    read_cell,
    sample_mean,
    write_cell,
)
from pipeline.methods import (
    LayerBudgets,
    Method,
    build_method,
    check_budget,
    check_ratio,
    keep_positions,
    ratio_budget,
    score_layers,
)
from pipeline.model.loading import DEFAULT_MODEL, load_model
from pipeline.model.prefill import (
    Prefill,
    answer_nll,
    cache_lengths,
    clone_cache,
    compress_cache,
    feed_tokens,
    greedy_decode_batch,
    prefill,
    stack_caches,
)

logger = logging.getLogger(__name__)

RULER_TASKS = ("niah_single_1", "niah_multikey_1")
LONGBENCH_TASKS = ("multi_news",)
ANSWER_NLL_TOKENS = 64  # reference tokens scored by teacher forcing, enough for every RULER answer
DEFAULT_METHODS = ("full", "streamingllm", "h2o", "snapkv", "pyramidkv", "circuitkv")


@dataclass
class GridConfig:
    """Everything ``run_grid`` needs; the CLI fills it from options and environment variables."""

    tasks: list[str]
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    budgets: list[int] = field(default_factory=lambda: [128, 512])
    budget_ratios: list[float] = field(default_factory=list)
    protocols: list[str] = field(default_factory=lambda: ["prompt"])
    num_samples: int | None = 20
    task_samples: dict[str, int | None] = field(default_factory=dict)
    context_lengths: list[int] = field(default_factory=lambda: [4096])
    seed: int = 0
    model: str = DEFAULT_MODEL
    device: str | None = None
    results_dir: Path = Path("data/results")
    essays_dir: Path | None = None
    longbench_dir: Path | None = None
    longbench_config: Path | None = None
    max_prompt_tokens: int | None = None
    ruler_dir: Path | None = None
    decode_batch: int = 8
    method_seeds: list[int] = field(default_factory=list)

    def ruler_file(self, task: str) -> Path | None:
        """RULER's own ``{task}.jsonl`` in ``ruler_dir``, when it exists; None to generate the task."""
        if self.ruler_dir is None or task not in ruler.TASKS:
            return None
        path = self.ruler_dir / f"{task}.jsonl"
        return path if path.is_file() else None

    def samples_for(self, task: str) -> int | None:
        """Return the number of samples requested for ``task``, or None for every row of its file."""
        if task == ruler.SWEEP_TASK:
            return len(ruler.SWEEP_LENGTHS) * len(ruler.SWEEP_DEPTHS)
        return self.task_samples.get(task, self.num_samples)

    def lengths_for(self, task: str) -> list[int | None]:
        """Return the target prompt lengths of a generated RULER task, or [None] for a task read from a file."""
        if task in ruler.TASKS and self.ruler_file(task) is None:
            return list(self.context_lengths)
        return [None]


@dataclass
class Cell:
    """One (protocol, method, budget) of a task, with its results as they accumulate."""

    method: Method
    config: CellConfig
    path: Path
    samples: list[SampleResult] = field(default_factory=list)

    def budget_for(self, num_tokens: int) -> int | None:
        """Entries per layer and KV head for a prompt of ``num_tokens``; None for the full cache."""
        if self.config.budget_ratio is not None:
            return ratio_budget(self.method, self.config.budget_ratio, num_tokens)
        return self.config.budget


@dataclass
class EncodedPrompt:
    """A tokenized prompt.

    Attributes:
        input_ids: Token ids, shape (1, n).
        truncated: Whether the prompt was cut in the middle to fit.
        context_tokens: Tokens before the question; None unless the split was requested.
    """

    input_ids: torch.Tensor
    truncated: bool
    context_tokens: int | None = None


@dataclass
class Variant:
    """One cell's cache for one prompt, waiting to be decoded."""

    cell: Cell
    budget: int | None
    schedule: LayerBudgets | None
    cache: object  # DynamicCache
    scoring_s: float


def task_benchmark(task: str, config: GridConfig) -> str:
    """Return ``"ruler"`` or ``"longbench"`` for ``task``; raise ValueError if it cannot run."""
    if task in ruler.TASKS or task == ruler.SWEEP_TASK:
        return "ruler"
    if longbench.base_task(task) not in longbench.TASK_METRICS:
        raise ValueError(
            f"Unknown task {task!r}. RULER tasks: {', '.join(sorted(ruler.TASKS))}; "
            f"LongBench tasks: {', '.join(sorted(longbench.TASK_METRICS))}."
        )
    if config.longbench_dir is None:
        raise ValueError(
            f"Task {task} is a LongBench task: set {longbench.DATA_DIR_ENV} (or --longbench-dir) "
            "to the directory with its jsonl file."
        )
    return "longbench"


def load_samples(task: str, config: GridConfig, tokenizer, length: int | None = None) -> list[Sample]:
    """Generate or read the samples of ``task``; ``length`` is the target of a generated RULER task."""
    count = config.samples_for(task)
    if task == ruler.SWEEP_TASK:
        return ruler.sweep(tokenizer, seed=config.seed, essays_dir=config.essays_dir)
    if config.ruler_file(task) is not None:
        return ruler.load_jsonl(config.ruler_file(task), task, count)
    if task_benchmark(task, config) == "ruler":
        if count is None:
            raise ValueError(f"{task} is generated, so it needs a number of samples, not every row.")
        return ruler.generate(task, count, length or config.context_lengths[0], tokenizer, config.seed,
                              config.essays_dir)
    return longbench.load(task, config.longbench_dir, config.longbench_config, count)


def sample_count(task: str, benchmark: str, config: GridConfig) -> int:
    """Return the number of samples a task's cells will hold: the request, or every row of a shorter LongBench file."""
    requested = config.samples_for(task)
    if benchmark == "ruler" and config.ruler_file(task) is None:
        if requested is None:
            raise ValueError(f"{task} is generated, so it needs a number of samples, not every row.")
        return requested
    if benchmark == "ruler":
        if requested is not None:
            return requested  # load_jsonl raises ValueError for a file with fewer rows
        with config.ruler_file(task).open(encoding="utf-8") as lines:
            return sum(1 for line in lines if line.strip())
    available = longbench.count_rows(task, config.longbench_dir)
    if requested is not None and requested > available:
        logger.warning(
            "%s: %s has %d rows, fewer than the %d requested; running all of them",
            task, config.longbench_dir, available, requested,
        )
    return available if requested is None else min(requested, available)


def encode_prompt(sample: Sample, tokenizer, max_prompt_tokens: int, split: bool = False) -> EncodedPrompt:
    """Tokenize a sample, truncating its prompt in the middle to fit ``max_prompt_tokens``.

    The budget left for the prompt text excludes the generation length and the
    chat template's own tokens. With ``split``, also find where the question
    starts: everything before it (chat header included) is context.
    """
    def render(prompt: str) -> str:
        if not sample.use_chat_template:
            return prompt + sample.answer_prefix
        messages = [{"role": "user", "content": prompt}]
        chat = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return chat + sample.answer_prefix

    overhead = len(tokenizer.encode(render(""), add_special_tokens=False))
    room = max_prompt_tokens - sample.max_new_tokens - overhead
    prompt, truncated = longbench.truncate_middle(sample.prompt, tokenizer, room)
    text = render(prompt)
    # Chat templates already hold their special tokens; plain prompts get the tokenizer's own.
    encoding = tokenizer(
        text, return_tensors="pt", add_special_tokens=not sample.use_chat_template, return_offsets_mapping=split
    )
    if not split:
        return EncodedPrompt(encoding.input_ids, truncated)

    if not sample.question or not prompt.endswith(sample.question):
        reason = "has no question after its context" if not sample.question else "lost its question to truncation"
        raise ValueError(
            f"{sample.sample_id}: the prompt {reason}, so the context protocol cannot compress the context alone; "
            "use --protocol prompt for this task."
        )
    question_start = text.rindex(sample.question)
    offsets = encoding.offset_mapping[0].tolist()  # (n, 2) character spans
    context_tokens = next(
        (index for index, (start, end) in enumerate(offsets) if start >= question_start and end > start),
        len(offsets),
    )
    return EncodedPrompt(encoding.input_ids, truncated, context_tokens)


def _stop_token_ids(model, tokenizer) -> set[int]:
    stops = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    stops.update(configured if isinstance(configured, list) else [configured])
    return {token for token in stops if token is not None}


def _model_info(model, source, device: torch.device) -> ModelInfo:
    config = model.config
    return ModelInfo(
        model_id=source.model_id,
        model_type=config.model_type,
        num_layers=config.num_hidden_layers,
        num_kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        bytes_per_element=next(model.parameters()).element_size(),
        device=device.type,
    )


def _is_finished(path: Path, expected: CellConfig) -> bool:
    if not path.exists():
        return False
    try:
        cell = read_cell(path)
    except ResultsError as error:
        logger.warning("Recomputing %s: %s", path, error)
        return False
    if cell.config != expected:
        logger.info("Recomputing %s: its config differs from the requested one", path)
        return False
    return True


def _plan_cells(
    task: str, benchmark: str, config: GridConfig, max_prompt_tokens: int, length: int | None = None
) -> list[Cell]:
    """Return the cells of one task (and target length, for a generated RULER task), finished or not."""
    if length is None:
        length = config.lengths_for(task)[0]
    num_samples = sample_count(task, benchmark, config)
    cells = []
    haystack = None
    if config.ruler_file(task) is not None:
        digest = hashlib.sha256(config.ruler_file(task).read_bytes()).hexdigest()[:12]
        haystack = f"RULER jsonl, sha256 {digest}"
    elif task == ruler.SWEEP_TASK or (benchmark == "ruler" and ruler.TASKS[task].haystack == "essay"):
        haystack = describe_essays(config.essays_dir)
    for protocol in config.protocols:
        for spec in config.methods:
            method = build_method(spec)
            if method.compresses:
                budgets = [(check_budget(method, b), None) for b in config.budgets]
                budgets += [(None, check_ratio(r)) for r in config.budget_ratios]
            else:
                budgets = [(None, None)]
            # A stochastic method runs once per method seed; None means the data seed.
            seeds = []
            if method.stochastic:
                seeds = [None if seed == config.seed else seed for seed in config.method_seeds]
            for budget, ratio in budgets:
                for method_seed in seeds or [None]:
                    cell_config = CellConfig(
                        task=task,
                        benchmark=benchmark,
                        method=method.label,
                        method_params=method.params(),
                        budget=budget,
                        budget_ratio=ratio,
                        protocol=protocol,
                        num_samples=num_samples,
                        context_tokens=length,
                        haystack=haystack,
                        max_prompt_tokens=max_prompt_tokens,
                        seed=config.seed,
                        method_seed=method_seed,
                    )
                    name = cell_filename(task, method.label, budget, protocol, ratio, method_seed, length)
                    cells.append(Cell(method, cell_config, config.results_dir / "cells" / name))
    return cells


def validate(config: GridConfig) -> None:
    """Reject unknown tasks, methods or protocols and infeasible budgets before the model is loaded."""
    for task in config.tasks:
        task_benchmark(task, config)
    for protocol in config.protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}.")
    if config.decode_batch < 1:
        raise ValueError(f"decode_batch must be at least 1, got {config.decode_batch}.")
    for ratio in config.budget_ratios:
        check_ratio(ratio)

    # Check the method with the most always-kept positions first, so the error names the binding limit.
    methods = sorted((build_method(name) for name in config.methods), key=lambda m: -m.min_budget())
    if any(method.compresses for method in methods) and not config.budgets and not config.budget_ratios:
        raise ValueError("No budgets given; pass --budgets (e.g. 128,512) or --budget-ratio (e.g. 0.1).")
    for method in methods:
        if method.compresses:
            for budget in config.budgets:
                check_budget(method, budget)


def run_grid(config: GridConfig) -> list[Path]:
    """Run every unfinished cell of the grid and return the paths written."""
    validate(config)
    model, tokenizer, source = load_model(config.model, config.device)
    device = model.device
    model_info = _model_info(model, source, device)
    limit = model.config.max_position_embeddings
    loaded = LoadedModel(
        model, tokenizer, _stop_token_ids(model, tokenizer), model_info, min(config.max_prompt_tokens or limit, limit)
    )
    max_prompt_tokens = loaded.max_prompt_tokens
    check_lengths(config, max_prompt_tokens)
    # Provenance describes the code as it was when the run started.
    record = provenance.collect(device)
    if record.git_dirty:
        logger.warning("The working tree has uncommitted changes; results record git_dirty=true.")
    written = []

    for task in config.tasks:
        benchmark = task_benchmark(task, config)
        for length in config.lengths_for(task):
            name = task if length is None else f"{task} at {length} tokens"
            cells = [
                cell for cell in _plan_cells(task, benchmark, config, max_prompt_tokens, length)
                if not _is_finished(cell.path, cell.config)
            ]
            if not cells:
                logger.info("%s: every cell is finished, skipping", name)
                continue
            logger.info("%s: running %d cells", name, len(cells))
            written += _run_cells(name, length, cells, config, loaded, record)
    return written


@dataclass
class LoadedModel:
    """The model of a run, with what its cells need to know about it."""

    model: object
    tokenizer: object
    stops: set[int]
    info: ModelInfo
    max_prompt_tokens: int  # longer prompts are truncated in the middle


def _run_cells(
    name: str, length: int | None, cells: list[Cell], config: GridConfig, loaded: LoadedModel, record
) -> list[Path]:
    """Run the pending ``cells`` of one task and length over its samples, then write each cell."""
    task = cells[0].config.task
    samples = load_samples(task, config, loaded.tokenizer, length)[: cells[0].config.num_samples]
    prompts = _encode_all(samples, cells, loaded.tokenizer, loaded.max_prompt_tokens)
    runner = PromptRun(
        loaded.model, loaded.tokenizer, loaded.stops, loaded.info, config.seed, config.decode_batch
    )
    started = time.perf_counter()
    for sample in tqdm(samples, desc=name, unit="prompt"):
        for protocol in config.protocols:
            protocol_cells = [cell for cell in cells if cell.config.protocol == protocol]
            if protocol_cells:
                runner.run(sample, prompts[sample.sample_id], protocol, protocol_cells)

    written = []
    for cell in cells:
        result = CellResult(
            schema_version=SCHEMA_VERSION,
            config=cell.config,
            model=loaded.info,
            samples=cell.samples,
            mean_score=sample_mean(cell.samples),
            total_seconds=sum(s.timing.prefill_s + s.timing.scoring_s + s.timing.decode_s for s in cell.samples),
            provenance=record,
        )
        write_cell(cell.path, result)
        written.append(cell.path)
        logger.info(
            "%s %s %s budget=%s: %.1f over %d samples", name, cell.config.protocol, cell.config.method,
            cell.config.budget if cell.config.budget_ratio is None else f"{cell.config.budget_ratio:g}n",
            result.mean_score, len(cell.samples),
        )
    logger.info("%s: done in %.0f s", name, time.perf_counter() - started)
    return written


def check_lengths(config: GridConfig, max_prompt_tokens: int) -> None:
    """Reject generated prompts longer than the model can read, because truncating them would cut out their needles."""
    for task in config.tasks:
        for length in config.lengths_for(task):
            # Generated prompts land within 2% of their target, and the answer needs room too.
            needed = None if length is None else math.ceil(length * 1.02) + ruler.TASKS[task].max_new_tokens
            if needed is not None and needed > max_prompt_tokens:
                raise ValueError(
                    f"{task} at {length} tokens (up to {needed} with its answer) does not fit the model's "
                    f"{max_prompt_tokens}-token limit "
                    "(its max_position_embeddings, or --max-prompt-tokens). Drop that length from the "
                    "context lengths, or use a model with a longer window."
                )


def _encode_all(samples: list[Sample], cells: list[Cell], tokenizer, max_prompt_tokens: int) -> dict:
    """Tokenize every sample before any prefill, so that a prompt the grid cannot run fails early."""
    split = any(cell.config.protocol == "context" for cell in cells)
    prompts = {}
    for sample in samples:
        prompt = encode_prompt(sample, tokenizer, max_prompt_tokens, split=split)
        for cell in cells:
            tokens = prompt.context_tokens if cell.config.protocol == "context" else prompt.input_ids.shape[1]
            cell.budget_for(tokens)  # raises BudgetError for a ratio too small for this prompt
        prompts[sample.sample_id] = prompt
    return prompts


@dataclass
class PromptRun:
    """Executor of the pending cells of one protocol on one sample: one prefill, batched decodes."""

    model: object
    tokenizer: object
    stops: set[int]
    model_info: ModelInfo
    seed: int
    decode_batch: int

    def run(self, sample: Sample, prompt: EncodedPrompt, protocol: str, cells: list[Cell]) -> None:
        input_ids = prompt.input_ids
        context = input_ids if protocol == "prompt" else input_ids[:, : prompt.context_tokens]  # (1, n_ctx)
        question = input_ids[0, context.shape[1] :]  # (q,), empty for the prompt protocol
        full = prefill(self.model, context)
        variants = self._variants(full, cells)

        # Variants whose caches have equal per-layer lengths decode together; uncompressed ones share one decode.
        groups: dict[tuple, list[Variant]] = {}
        for variant in variants:
            key = ("whole",) if variant.schedule is None else tuple(cache_lengths(variant.cache))
            groups.setdefault(key, []).append(variant)
        # The uncompressed group goes first, so compressed outputs can be compared with the full cache's.
        full_tokens = None
        for key in sorted(groups, key=lambda group_key: group_key != ("whole",)):
            group = groups[key]
            batches = [group] if key == ("whole",) else [
                group[start : start + self.decode_batch] for start in range(0, len(group), self.decode_batch)
            ]
            for batch in batches:
                outputs = self._decode(sample, prompt, full, question, batch, key == ("whole",), full_tokens)
                if key == ("whole",):
                    full_tokens = outputs[0]

    def _answer_ids(self, sample: Sample) -> torch.Tensor:
        """Tokens of the reference answer whose likelihood is measured, shape (m,).

        Tasks that need every reference (string_match_all) score all of them,
        joined by ", "; the others score the first. The answer follows the
        prompt after a space and is cut to ``ANSWER_NLL_TOKENS`` tokens.
        """
        references = sample.references if sample.metric == "string_match_all" else sample.references[:1]
        text = " " + ", ".join(reference.strip() for reference in references)
        ids = self.tokenizer.encode(text, add_special_tokens=False)[:ANSWER_NLL_TOKENS]
        return torch.tensor(ids or [self.tokenizer.eos_token_id])

    def _variants(self, full: Prefill, cells: list[Cell]) -> list[Variant]:
        n = full.num_tokens
        scores: dict[tuple[str, int], tuple[list[torch.Tensor], float]] = {}
        variants = []
        for cell in cells:
            method = cell.method
            budget = cell.budget_for(n) if method.compresses else None
            if budget is None or n <= budget:
                variants.append(Variant(cell, budget, None, full.cache, 0.0))
                continue

            seed = self.seed if cell.config.method_seed is None else cell.config.method_seed
            key = (repr(method), seed)
            if key not in scores:
                started = time.perf_counter()
                layer_scores = score_layers(method, full, seed)
                scores[key] = (layer_scores, time.perf_counter() - started)
            layer_scores, scoring_s = scores[key]
            schedule = method.layer_budgets(budget, full.num_layers, n)
            cache = compress_cache(full, keep_positions(method, layer_scores, budget))
            _check_compressed(method.label, budget, n, cache_lengths(cache), schedule)
            variants.append(Variant(cell, budget, schedule, cache, scoring_s))
        return variants

    def _decode(
        self, sample, prompt, full, question, batch: list[Variant], shared: bool, full_tokens: list[int] | None
    ) -> list[list[int]]:
        """Decode one batch, record its samples, and return the generated tokens of each row.

        ``full_tokens``, the full cache's output on this prompt when it ran,
        gives each sample's agreement with it.
        """
        # Uncompressed variants all hold the full cache, so one decode serves them all.
        rows = batch[:1] if shared else batch
        cache = clone_cache(full.cache) if shared else stack_caches([variant.cache for variant in rows])
        lengths = cache_lengths(cache)  # before the question and decoding extend the cache
        n = full.num_tokens

        started = time.perf_counter()
        if len(question):
            first_logprobs = feed_tokens(self.model, cache, question, n, logprobs=True)  # (V, vocab)
        else:
            first_logprobs = full.last_logprobs.unsqueeze(0).expand(len(rows), -1)  # (V, vocab)
        first_tokens = first_logprobs.argmax(dim=-1).tolist()
        # The answer's likelihood is scored on a copy, because decoding extends the cache in place.
        nll = answer_nll(
            self.model, clone_cache(cache), first_logprobs, self._answer_ids(sample), n + len(question)
        ).tolist()
        outputs, _ = greedy_decode_batch(
            self.model, cache, first_tokens, n + len(question), sample.max_new_tokens, self.stops
        )
        decode_s = time.perf_counter() - started  # the question's forward pass included

        for index, variant in enumerate(batch):
            tokens = outputs[0 if shared else index]
            reference_tokens = tokens if shared else full_tokens
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            prediction = metrics.postprocess(sample.task, text)
            compressed = variant.schedule is not None
            variant.cell.samples.append(
                SampleResult(
                    sample_id=sample.sample_id,
                    prompt_tokens=int(prompt.input_ids.shape[1]),
                    context_tokens=n,
                    truncated=prompt.truncated,
                    budget=variant.budget,
                    compressed=compressed,
                    layer_budgets=variant.schedule.lengths if compressed else None,
                    budget_fallback=variant.schedule.fallback if compressed else None,
                    cache_lengths=lengths,
                    kv_bytes=self.model_info.kv_bytes(sum(lengths)),
                    full_kv_bytes=self.model_info.kv_bytes(n * len(lengths)),
                    length=sample.extra.get("length"),
                    generated_tokens=len(tokens),
                    agreement_tokens=None if reference_tokens is None else common_prefix(tokens, reference_tokens),
                    answer_nll=nll[0 if shared else index],
                    prediction=prediction,
                    references=list(sample.references) if sample.keep_references else None,
                    score=metrics.score(
                        sample.metric, prediction, sample.references, all_classes=sample.extra.get("all_classes")
                    ),
                    timing=Timing(
                        prefill_s=full.seconds, scoring_s=variant.scoring_s, decode_s=decode_s,
                        decode_batch=len(rows),
                    ),
                )
            )
        return outputs


def common_prefix(first: list[int], second: list[int]) -> int:
    """Return the number of leading tokens that two outputs share."""
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def _check_compressed(method: str, budget: int, n: int, lengths: list[int], schedule: LayerBudgets) -> None:
    """Fail loudly when a cache that should be compressed is not, or not to the method's schedule."""
    if lengths != schedule.lengths:
        raise RuntimeError(
            f"{method} at budget {budget} produced cache lengths {lengths}, expected the schedule {schedule.lengths}."
        )
    if sum(lengths) >= n * len(lengths):
        raise RuntimeError(
            f"{method} at budget {budget} left the {n}-token cache uncompressed; refusing to report "
            "full-cache numbers under its name."
        )
