"""Run the grid: tasks x methods x budgets, one prefill per prompt.

For each task the runner finds the cells (method, budget) without a valid
result file, then for every sample prefills the prompt once, derives each
pending cell's cache from that prefill, decodes greedily and scores. A cell's
file is written atomically once all its samples are done, so a rerun skips
finished cells and never reads a half-written file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.benchmarks import longbench, metrics, ruler
from pipeline.benchmarks.sample import Sample
from pipeline.experiments import provenance
from pipeline.experiments.schema import (
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
from pipeline.methods import Method, build_method, check_budget, keep_positions, score_layers
from pipeline.model.loading import DEFAULT_MODEL, load_model
from pipeline.model.prefill import cache_lengths, clone_cache, compress_cache, greedy_decode, prefill

logger = logging.getLogger(__name__)

RULER_TASKS = ("niah_single_1", "niah_multikey_1")
LONGBENCH_TASKS = ("multi_news",)


@dataclass
class GridConfig:
    """Everything ``run_grid`` needs; the CLI fills it from options and environment variables."""

    tasks: list[str]
    methods: list[str] = field(default_factory=lambda: ["full", "streamingllm", "snapkv", "circuitkv"])
    budgets: list[int] = field(default_factory=lambda: [128, 512])
    num_samples: int = 20
    task_samples: dict[str, int] = field(default_factory=dict)
    context_tokens: int = 4096
    seed: int = 0
    model: str = DEFAULT_MODEL
    device: str | None = None
    results_dir: Path = Path("data/results")
    essays_dir: Path | None = None
    longbench_dir: Path | None = None
    longbench_config: Path | None = None
    max_prompt_tokens: int | None = None

    def samples_for(self, task: str) -> int:
        return self.task_samples.get(task, self.num_samples)


@dataclass
class Cell:
    """One (method, budget) of a task, with its results as they accumulate."""

    method: Method
    budget: int | None
    config: CellConfig
    path: Path
    samples: list[SampleResult] = field(default_factory=list)


def task_benchmark(task: str, config: GridConfig) -> str:
    """Return ``"ruler"`` or ``"longbench"`` for ``task``; raise ValueError if it cannot run."""
    if task in ruler.TASKS:
        return "ruler"
    if task not in longbench.TASK_METRICS:
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


def load_samples(task: str, config: GridConfig, tokenizer) -> list[Sample]:
    """Generate or read the samples of ``task``."""
    count = config.samples_for(task)
    if task_benchmark(task, config) == "ruler":
        return ruler.generate(task, count, config.context_tokens, tokenizer, config.seed, config.essays_dir)
    return longbench.load(task, config.longbench_dir, config.longbench_config, count)


def encode_prompt(sample: Sample, tokenizer, max_prompt_tokens: int) -> tuple[torch.Tensor, bool]:
    """Tokenize a sample, truncating its prompt in the middle to fit ``max_prompt_tokens``.

    The budget left for the prompt text excludes the generation length and the
    chat template's own tokens.
    """
    def render(prompt: str) -> str:
        if not sample.use_chat_template:
            return prompt + sample.answer_prefix
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + sample.answer_prefix

    overhead = len(tokenizer.encode(render(""), add_special_tokens=False))
    room = max_prompt_tokens - sample.max_new_tokens - overhead
    prompt, truncated = longbench.truncate_middle(sample.prompt, tokenizer, room)
    # Chat templates already hold their special tokens; plain prompts get the tokenizer's own.
    ids = tokenizer(render(prompt), return_tensors="pt", add_special_tokens=not sample.use_chat_template).input_ids
    return ids, truncated


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


def _plan_cells(task: str, benchmark: str, config: GridConfig, max_prompt_tokens: int) -> list[Cell]:
    cells = []
    for name in config.methods:
        method = build_method(name)
        budgets = [None] if not method.compresses else [check_budget(method, b) for b in config.budgets]
        for budget in budgets:
            cell_config = CellConfig(
                task=task,
                benchmark=benchmark,
                method=name,
                method_params=method.params(),
                budget=budget,
                num_samples=config.samples_for(task),
                context_tokens=config.context_tokens if benchmark == "ruler" else None,
                max_prompt_tokens=max_prompt_tokens,
                seed=config.seed,
            )
            path = config.results_dir / "cells" / cell_filename(task, name, budget)
            cells.append(Cell(method, budget, cell_config, path))
    return cells


def validate(config: GridConfig) -> None:
    """Reject unknown tasks or methods and infeasible budgets before the model is loaded."""
    for task in config.tasks:
        task_benchmark(task, config)
    if not config.budgets:
        raise ValueError("No budgets given; pass --budgets, e.g. --budgets 128,512.")

    # Check the method with the most always-kept positions first, so the error names the binding limit.
    methods = sorted((build_method(name) for name in config.methods), key=lambda m: -m.min_budget())
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
    stops = _stop_token_ids(model, tokenizer)
    limit = model.config.max_position_embeddings
    max_prompt_tokens = min(config.max_prompt_tokens or limit, limit)
    # Provenance describes the code as it was when the run started.
    record = provenance.collect(device)
    if record.git_dirty:
        logger.warning("The working tree has uncommitted changes; results record git_dirty=true.")
    written = []

    for task in config.tasks:
        benchmark = task_benchmark(task, config)
        cells = [
            cell for cell in _plan_cells(task, benchmark, config, max_prompt_tokens)
            if not _is_finished(cell.path, cell.config)
        ]
        if not cells:
            logger.info("%s: every cell is finished, skipping", task)
            continue
        logger.info("%s: running %d cells", task, len(cells))

        samples = load_samples(task, config, tokenizer)
        started = time.perf_counter()
        for sample in tqdm(samples, desc=task, unit="prompt"):
            _run_sample(sample, cells, model, tokenizer, stops, max_prompt_tokens, config.seed)

        elapsed = time.perf_counter() - started
        for cell in cells:
            result = CellResult(
                schema_version=SCHEMA_VERSION,
                config=cell.config,
                model=model_info,
                samples=cell.samples,
                mean_score=sample_mean(cell.samples),
                total_seconds=sum(s.timing.prefill_s + s.timing.scoring_s + s.timing.decode_s for s in cell.samples),
                provenance=record,
            )
            write_cell(cell.path, result)
            written.append(cell.path)
            logger.info(
                "%s %s budget=%s: %.1f over %d samples", task, cell.config.method, cell.budget,
                result.mean_score, len(cell.samples),
            )
        logger.info("%s: done in %.0f s", task, elapsed)
    return written


def _run_sample(sample, cells, model, tokenizer, stops, max_prompt_tokens, seed) -> None:
    input_ids, truncated = encode_prompt(sample, tokenizer, max_prompt_tokens)
    full = prefill(model, input_ids)
    n = full.num_tokens
    scores: dict[str, tuple[list[torch.Tensor], float]] = {}

    for cell in cells:
        method = cell.method
        compressed = method.compresses and n > cell.budget
        scoring_s = 0.0
        if compressed:
            if method.name not in scores:
                started = time.perf_counter()
                layer_scores = score_layers(method, full, seed)
                scores[method.name] = (layer_scores, time.perf_counter() - started)
            layer_scores, scoring_s = scores[method.name]
            cache = compress_cache(full, keep_positions(method, layer_scores, cell.budget))
            expected = method.layer_budgets(cell.budget, full.num_layers, n)
            if cache_lengths(cache) != expected:
                raise RuntimeError(
                    f"{method.name} at budget {cell.budget} produced cache lengths {cache_lengths(cache)}, "
                    f"expected {expected}."
                )
        else:
            cache = clone_cache(full.cache)
        lengths = cache_lengths(cache)  # before decoding appends to the cache

        tokens, decode_s = greedy_decode(model, cache, full.first_token, n, sample.max_new_tokens, stops)
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        prediction = metrics.postprocess(sample.task, text)
        cell.samples.append(
            SampleResult(
                sample_id=sample.sample_id,
                prompt_tokens=n,
                truncated=truncated,
                compressed=compressed,
                cache_lengths=lengths,
                generated_tokens=len(tokens),
                prediction=prediction,
                references=list(sample.references) if sample.keep_references else None,
                score=metrics.score(sample.metric, prediction, sample.references),
                timing=Timing(prefill_s=full.seconds, scoring_s=scoring_s, decode_s=decode_s),
            )
        )
