"""Run the grid: plan its cells, group them by prompt, and run the unfinished groups on an executor.

``run_grid`` plans every cell of one or more grids (the profile's main grid
and its ablation pass), groups the cells that read the same prompts
(``cells.PromptGroup``), and hands the groups with unfinished cells to an
executor: in this process, in ``jobs`` worker processes, or on Ray
(``executors``). A worker claims a group before it runs it (``claims``), so
several runners can share one results folder, and the loop waits for groups
that other runners hold. What one group computes is in ``evaluation``.

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
from functools import cache
from pathlib import Path

from tqdm import tqdm

from pipeline.benchmarks import longbench, ruler
from pipeline.benchmarks.haystack import describe_essays
from pipeline.benchmarks.sample import Sample
from pipeline.experiments import claims
from pipeline.experiments.cells import CellPlan, PromptGroup, code_version, finished, group_plans
from pipeline.experiments.schema import PROTOCOLS
from pipeline.methods import Method, build_method, check_budget, check_ratio
from pipeline.model.loading import DEFAULT_MODEL, pick_device, resolve_model

logger = logging.getLogger(__name__)

RULER_TASKS = ("niah_single_1", "niah_multikey_1")
LONGBENCH_TASKS = ("multi_news",)
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
    shard_size: int | None = None  # samples per cell file; None keeps a task's samples in one shard

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








@cache
def _essays(essays_dir: Path | None) -> str:
    """Return ``describe_essays`` once per directory: it hashes every essay and logs which text it uses."""
    return describe_essays(essays_dir)


def plan_cells(task: str, benchmark: str, config: GridConfig, length: int | None = None) -> list[CellPlan]:
    """Return the cells of one task (and target length, for a generated RULER task), finished or not."""
    if length is None:
        length = config.lengths_for(task)[0]
    task_samples = sample_count(task, benchmark, config)
    shard_size = config.shard_size or task_samples
    source = resolve_model(config.model)
    device = pick_device(config.device).type
    haystack = None
    if config.ruler_file(task) is not None:
        digest = hashlib.sha256(config.ruler_file(task).read_bytes()).hexdigest()[:12]
        haystack = f"RULER jsonl, sha256 {digest}"
    elif task == ruler.SWEEP_TASK or (benchmark == "ruler" and ruler.TASKS[task].haystack == "essay"):
        haystack = _essays(config.essays_dir)

    plans = []
    for start in range(0, task_samples, shard_size):
        for protocol in config.protocols:
            for spec in config.methods:
                plans += _method_plans(build_method(spec), config, dict(
                    model=source.model_id, device=device, task=task, benchmark=benchmark, context_tokens=length,
                    haystack=haystack, task_samples=task_samples, shard_start=start,
                    shard_stop=min(start + shard_size, task_samples), protocol=protocol,
                    max_prompt_tokens=config.max_prompt_tokens, seed=config.seed,
                ))
    return plans


def _method_plans(method: Method, config: GridConfig, coordinates: dict) -> list[CellPlan]:
    """Return one plan per budget (and per method seed, for a stochastic method) of ``method``."""
    if method.compresses:
        budgets = [(check_budget(method, budget), None) for budget in config.budgets]
        budgets += [(None, check_ratio(ratio)) for ratio in config.budget_ratios]
    else:
        budgets = [(None, None)]
    # A stochastic method runs once per method seed; None means the data seed.
    seeds = [None if seed == config.seed else seed for seed in config.method_seeds] if method.stochastic else []
    version = code_version(coordinates["benchmark"], type(method).__module__)
    return [
        CellPlan(**coordinates, method=method.label, method_params=method.params(), budget=budget,
                 budget_ratio=ratio, method_seed=method_seed, code_version=version)
        for budget, ratio in budgets
        for method_seed in seeds or [None]
    ]


def plan_grid(configs: list[GridConfig]) -> list[PromptGroup]:
    """Plan every cell of ``configs`` and group the cells that read the same prompts."""
    plans: list[CellPlan] = []
    methods: dict[str, Method] = {}
    sources: dict[str, GridConfig] = {}
    for config in configs:
        for spec in config.methods:
            method = build_method(spec)
            methods.setdefault(method.label, method)
        for task in config.tasks:
            benchmark = task_benchmark(task, config)
            for length in config.lengths_for(task):
                for plan in plan_cells(task, benchmark, config, length):
                    plans.append(plan)
                    sources.setdefault(plan.key, config)
    groups = group_plans(plans, methods)
    for group in groups:
        group.grid = sources[group.plans[0].key]
    return groups


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


class RunError(RuntimeError):
    """Groups of the grid failed; the message lists them and where their errors are recorded."""


@dataclass
class RunOptions:
    """How ``run_grid`` runs the groups: the executor, and for ``local`` the number of worker processes."""

    executor: str = "local"  # local (jobs processes, or this process when jobs is 1) or ray
    jobs: int = 1
    ray_address: str | None = None  # None starts a Ray instance on this machine
    poll_s: float = 10.0  # how often to look at groups that other runners hold


def pending_groups(groups: list[PromptGroup], results_dir: Path, report: bool = False) -> list[PromptGroup]:
    """Return the groups with unfinished cells, each cut down to those cells; ``report`` logs invalid files."""
    pending = []
    for group in groups:
        plans = [plan for plan in group.plans if not finished(plan, results_dir, report)]
        if plans:
            pending.append(group.with_plans(plans))
    return pending


def run_grid(configs: GridConfig | list[GridConfig], options: RunOptions | None = None) -> list[Path]:
    """Run every unfinished cell of ``configs`` and return the paths written.

    Raises RunError after the other groups finished when some group failed.
    """
    from pipeline.experiments import executors

    configs = [configs] if isinstance(configs, GridConfig) else list(configs)
    options = options or RunOptions()
    for config in configs:
        validate(config)
    results_dir = configs[0].results_dir
    if any(config.results_dir != results_dir for config in configs):
        raise ValueError("every grid of one run must write to the same results directory")
    removed = claims.remove_stale_temporaries(results_dir)
    if removed:
        logger.info("Removed %d temporary files that interrupted writers left in %s", removed, results_dir)

    groups = plan_grid(configs)
    total = sum(len(group.plans) for group in groups)
    pending = pending_groups(groups, results_dir, report=True)
    if not pending:
        logger.info("Every one of the %d cells is finished; nothing to run", total)
        return []
    check_lengths(configs, executors.model_limit(configs[0]))
    logger.info("%d of %d cells to run, in %d prompt groups", sum(len(group.plans) for group in pending), total,
                len(pending))

    written: list[Path] = []
    failed: dict[str, str] = {}
    completed: set[str] = set()
    progress = tqdm(total=sum(len(group.plans) for group in pending), unit="cell", desc="cells")
    with executors.open_executor(options, configs[0]) as executor:
        while pending:
            runnable = [group for group in pending if not claims.held(results_dir, group.key)]
            if not runnable:
                logger.info("Waiting for %d prompt groups that other runners hold", len(pending))
                time.sleep(options.poll_s)
            for outcome in executor.run(runnable):
                if outcome.status == "done" and outcome.group_key in completed:
                    outcome.status, outcome.error = "failed", "it ran, but its cells are still not finished"
                if outcome.status == "failed":
                    failed[outcome.group_key] = f"{outcome.description}: {outcome.error}"
                elif outcome.status == "done":
                    completed.add(outcome.group_key)
                for cell in outcome.cells:
                    written.append(cell.path)
                    progress.update(1)
            pending = [group for group in pending_groups(groups, results_dir) if group.key not in failed]
    progress.close()

    if failed:
        lines = "\n".join(f"  {text}" for text in failed.values())
        raise RunError(f"{len(failed)} prompt groups failed (records in {results_dir / 'failures'}); the other "
                       f"cells are saved, and a rerun retries only these:\n{lines}")
    return written


def check_lengths(configs: list[GridConfig], max_prompt_tokens: int) -> None:
    """Reject generated prompts longer than the model can read, because truncating them would cut out their needles."""
    for config in configs:
        limit = min(config.max_prompt_tokens or max_prompt_tokens, max_prompt_tokens)
        for task in config.tasks:
            for length in config.lengths_for(task):
                # Generated prompts land within 2% of their target, and the answer needs room too.
                needed = None if length is None else math.ceil(length * 1.02) + ruler.TASKS[task].max_new_tokens
                if needed is not None and needed > limit:
                    raise ValueError(
                        f"{task} at {length} tokens (up to {needed} with its answer) does not fit the model's "
                        f"{limit}-token limit "
                        "(its max_position_embeddings, or --max-prompt-tokens). Drop that length from the "
                        "context lengths, or use a model with a longer window."
                    )
