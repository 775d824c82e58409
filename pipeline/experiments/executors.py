"""Executors: where prompt groups run. In this process, in local worker processes, or as Ray tasks.

Every executor calls ``run_group`` on each group. A worker loads the model
once and keeps it for every later group (``_MODELS``), claims the group,
computes its unfinished cells with one prefill per prompt, writes each cell
atomically, and releases the claim. A group that raises is recorded in
``failures/`` and reported; the other groups go on.

- ``local`` with ``jobs == 1``: groups run one after another in this process.
- ``local`` with ``jobs > 1``: a pool of ``jobs`` spawned processes, each with
  ``cpu_count // jobs`` torch threads.
- ``ray``: one Ray task per group, asking for one GPU on CUDA; the workers
  write to the results folder, which must be shared by every node.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.experiments import claims, provenance
from pipeline.experiments.cells import PromptGroup, finished
from pipeline.experiments.evaluation import Cell, PromptRun, _encode_all, _model_info, _stop_token_ids
from pipeline.experiments.schema import SCHEMA_VERSION, CellResult, ModelInfo, sample_mean, write_cell

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A worker's model, with what its cells need to know about it."""

    model: object
    tokenizer: object
    stops: set[int]
    info: ModelInfo
    limit: int  # the model's max_position_embeddings
    record: object  # provenance of the run: code, packages, device


@dataclass
class CellOutcome:
    path: Path
    description: str
    score: float
    seconds: float


@dataclass
class GroupOutcome:
    """What running one group did: done, claimed (another runner holds it) or failed."""

    group_key: str
    description: str
    status: str
    cells: list[CellOutcome] = field(default_factory=list)
    error: str | None = None


_MODELS: dict[tuple, LoadedModel] = {}


def _loaded_model(model: str, device: str | None) -> LoadedModel:
    """Load the model on first use in this process and keep it for the process's later groups."""
    from pipeline.model.loading import load_model

    key = (model, device)
    if key not in _MODELS:
        network, tokenizer, source = load_model(model, device)
        record = provenance.collect(network.device)
        if record.git_dirty:
            logger.warning("The working tree has uncommitted changes; results record git_dirty=true.")
        _MODELS[key] = LoadedModel(network, tokenizer, _stop_token_ids(network, tokenizer),
                                   _model_info(network, source, network.device),
                                   network.config.max_position_embeddings, record)
    return _MODELS[key]


def model_limit(grid) -> int:
    """Return the model's ``max_position_embeddings`` from its config, without loading the weights."""
    from transformers import AutoConfig

    from pipeline.model.loading import resolve_model

    source = resolve_model(grid.model)
    config = AutoConfig.from_pretrained(str(source.directory), gguf_file=source.gguf_file, local_files_only=True)
    return config.max_position_embeddings


def run_group(group: PromptGroup, show_prompts: bool = False) -> GroupOutcome:
    """Claim ``group``, compute its unfinished cells, write them, and release the claim."""
    from pipeline.experiments.runner import load_samples

    if not logging.getLogger().handlers:  # a Ray worker starts without any, and would drop the per-cell lines
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    grid = group.grid
    description = group.describe()
    claim = claims.try_claim(grid.results_dir, group.key, description)
    if claim is None:
        return GroupOutcome(group.key, description, "claimed")
    try:
        plans = [plan for plan in group.plans if not finished(plan, grid.results_dir)]
        if not plans:
            return GroupOutcome(group.key, description, "done")
        loaded = _loaded_model(grid.model, grid.device)
        max_prompt_tokens = min(grid.max_prompt_tokens or loaded.limit, loaded.limit)
        cells = [Cell(group.methods[plan.method], plan.config(max_prompt_tokens), plan.path(grid.results_dir))
                 for plan in plans]
        samples = load_samples(group.task, grid, loaded.tokenizer, group.context_tokens)
        samples = samples[: plans[0].task_samples][group.shard_start : group.shard_stop]
        prompts = _encode_all(samples, cells, loaded.tokenizer, max_prompt_tokens)
        runner = PromptRun(loaded.model, loaded.tokenizer, loaded.stops, loaded.info, grid.seed, grid.decode_batch)

        started = time.perf_counter()
        for sample in tqdm(samples, desc=description, unit="prompt", leave=False, disable=not show_prompts):
            for protocol in grid.protocols:
                protocol_cells = [cell for cell in cells if cell.config.protocol == protocol]
                if protocol_cells:
                    runner.run(sample, prompts[sample.sample_id], protocol, protocol_cells)
            claim.touch()

        outcomes = [_write(cell, plan.describe(), loaded) for cell, plan in zip(cells, plans)]
        claims.clear_failure(grid.results_dir, group.key)
        logger.info("%s: %d cells in %.0f s", description, len(cells), time.perf_counter() - started)
        return GroupOutcome(group.key, description, "done", outcomes)
    except Exception as error:  # one failing group must not stop the others; the record keeps the error
        path = claims.record_failure(grid.results_dir, group.key, description, error)
        logger.error("%s failed: %s: %s (recorded in %s)", description, type(error).__name__, error, path)
        return GroupOutcome(group.key, description, "failed", error=f"{type(error).__name__}: {error}")
    finally:
        claim.release()


def _write(cell: Cell, description: str, loaded: LoadedModel) -> CellOutcome:
    seconds = sum(s.timing.prefill_s + s.timing.scoring_s + s.timing.decode_s for s in cell.samples)
    result = CellResult(
        schema_version=SCHEMA_VERSION, config=cell.config, model=loaded.info, samples=cell.samples,
        mean_score=sample_mean(cell.samples), total_seconds=seconds, provenance=loaded.record,
    )
    write_cell(cell.path, result)
    logger.info("%s: score %.1f over %d samples, %.0f s", description, result.mean_score, len(cell.samples), seconds)
    return CellOutcome(cell.path, description, result.mean_score, seconds)


def _lost(group: PromptGroup, error: BaseException) -> GroupOutcome:
    """Return the outcome of a group whose worker died before it could report; its claim goes stale."""
    logger.error("%s: its worker died: %s: %s", group.describe(), type(error).__name__, error)
    return GroupOutcome(group.key, group.describe(), "failed", error=f"worker died: {type(error).__name__}: {error}")


class InlineExecutor:
    """Run groups one after another in this process."""

    def run(self, groups: list[PromptGroup]) -> Iterator[GroupOutcome]:
        for group in groups:
            yield run_group(group, show_prompts=True)


def _start_worker(threads: int, level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [worker %(process)d]: %(message)s")
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Exit when the runner that started this worker is gone (kill -9 included): an orphan would go on computing
    queued groups and hold a model copy. Its claim then names a dead process, so the next run takes it over."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


class ProcessExecutor:
    """Run groups in ``jobs`` spawned worker processes, each holding one copy of the model."""

    def __init__(self, jobs: int, threads: int | None = None):
        self.jobs = jobs
        self.threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        logger.info("%d worker processes with %d torch threads each", jobs, self.threads)
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(self.threads, logging.getLogger().getEffectiveLevel()),
        )

    def run(self, groups: list[PromptGroup]) -> Iterator[GroupOutcome]:
        try:
            futures = {self.pool.submit(run_group, group): group for group in groups}
        except BrokenProcessPool:  # a worker died in an earlier round; start fresh ones
            self.pool.shutdown(cancel_futures=True)
            self.pool = self._new_pool()
            futures = {self.pool.submit(run_group, group): group for group in groups}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # a worker that died (killed, out of memory) takes its group with it
                yield _lost(futures[future], error)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayExecutor:
    """Run each group as a Ray task on the cluster at ``address`` (None: a Ray instance on this machine)."""

    def __init__(self, address: str | None, grid, threads: int | None = None):
        import ray

        import pipeline

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            # py_modules ships this checkout's code to every worker, so the nodes need only the dependencies.
            ray.init(address=address, include_dashboard=False, log_to_driver=True,
                     runtime_env={"py_modules": [str(Path(pipeline.__file__).parent)]})
        gpus = 1 if str(grid.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") else 0
        self.task = ray.remote(num_gpus=gpus, num_cpus=threads or 1)(run_group)
        logger.info("Ray at %s: %s; each group asks for %d GPU", address or "a local instance",
                    ray.cluster_resources(), gpus)

    def run(self, groups: list[PromptGroup]) -> Iterator[GroupOutcome]:
        refs = {self.task.remote(group): group for group in groups}
        waiting = list(refs)
        while waiting:
            done, waiting = self.ray.wait(waiting, num_returns=1)
            try:
                yield self.ray.get(done[0])
            except Exception as error:  # the task's worker or node died
                yield _lost(refs[done[0]], error)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()  # disconnects from a cluster, and stops a local instance that this run started


@contextlib.contextmanager
def open_executor(options, grid) -> Iterator[InlineExecutor | ProcessExecutor | RayExecutor]:
    """Yield the executor that ``options`` ask for, and close it afterwards."""
    if options.executor == "ray":
        executor = RayExecutor(options.ray_address, grid)
    elif options.executor == "local" and options.jobs > 1:
        executor = ProcessExecutor(options.jobs)
    elif options.executor == "local":
        executor = InlineExecutor()
    else:
        raise ValueError(f"unknown executor {options.executor!r}; choose local or ray")
    try:
        yield executor
    finally:
        if hasattr(executor, "close"):
            executor.close()
