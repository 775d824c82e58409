"""Merge the shard cells of a grid into the per-task files that the paper and the summary read.

``merge`` plans the grid as ``make results`` does, checks that every cell it
expects is finished, and writes one file per (task, length, protocol,
method, budget, seed) to ``merged/``, with the samples of all shards in
order. A missing cell stops it with the list of what is missing, unless
``draft`` is set: then the complete entries are written and
``merged/missing.json`` lists the holes, which the paper shows as red marks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.experiments.cells import CellPlan, PromptGroup, finished
from pipeline.experiments.schema import (
    MERGED_DIR,
    MISSING_FILE,
    CellResult,
    cell_filename,
    cell_json,
    read_cell,
    sample_mean,
    write_cell,
)

logger = logging.getLogger(__name__)

LISTED = 20  # missing cells named in an error; the rest are counted


class IncompleteResults(ValueError):
    """Cells that the grid expects are not finished; the message lists them."""


@dataclass(frozen=True)
class Hole:
    """One entry of a table that has no result: a merged cell with a missing shard."""

    task: str
    context_tokens: int | None
    protocol: str
    method: str
    budget: int | None
    budget_ratio: float | None
    method_seed: int | None
    missing_shards: list[str]


def _merge_key(plan: CellPlan) -> str:
    """Return the key of the plan's whole task, which every shard of one merged file shares."""
    return replace(plan, shard_start=0, shard_stop=plan.task_samples).key


def merged_name(plan: CellPlan) -> str:
    return cell_filename(plan.task, plan.method, plan.budget, plan.protocol, plan.budget_ratio, plan.method_seed,
                         plan.context_tokens)


def merge_shards(plans: list[CellPlan], results_dir: Path) -> CellResult:
    """Return one cell with the samples of ``plans`` (the shards of one merged cell) in order."""
    plans = sorted(plans, key=lambda plan: plan.shard_start)
    shards = [read_cell(plan.path(results_dir)) for plan in plans]
    first = shards[0]
    samples = [sample for shard in shards for sample in shard.samples]
    config = first.config.model_copy(update={
        "num_samples": len(samples), "shard_start": 0, "shard_stop": len(samples), "key": None,
    })
    # NOTE: the provenance is the first shard's; each shard file keeps its own (commit, packages, time).
    return CellResult(
        schema_version=first.schema_version, config=config, model=first.model, samples=samples,
        mean_score=sample_mean(samples), total_seconds=sum(shard.total_seconds for shard in shards),
        provenance=first.provenance,
    )


def merge(groups: list[PromptGroup], results_dir: Path, draft: bool = False) -> tuple[list[Path], list[Hole]]:
    """Write ``merged/`` from the finished cells of ``groups``; return the files written and the holes.

    Raises IncompleteResults, and writes nothing, when a cell is missing and ``draft`` is off.
    """
    by_key: dict[str, list[CellPlan]] = {}
    for group in groups:
        for plan in group.plans:
            by_key.setdefault(_merge_key(plan), []).append(plan)

    holes = []
    complete = []
    for plans in by_key.values():
        missing = [plan for plan in plans if not finished(plan, results_dir)]
        if not missing:
            complete.append(plans)
        else:
            first = plans[0]
            holes.append(Hole(first.task, first.context_tokens, first.protocol, first.method, first.budget,
                              first.budget_ratio, first.method_seed,
                              [f"{plan.shard_start}-{plan.shard_stop - 1}" for plan in missing]))
    if holes and not draft:
        lines = [f"  {hole.task} {hole.protocol} {hole.method} budget={hole.budget or hole.budget_ratio or 'full'}"
                 f" samples {', '.join(hole.missing_shards)}" for hole in holes[:LISTED]]
        if len(holes) > LISTED:
            lines.append(f"  and {len(holes) - LISTED} more")
        raise IncompleteResults(
            f"{len(holes)} of the {len(by_key)} merged results (task, protocol, method, budget) miss shard cells, "
            "so the tables would have holes. Run "
            "`make results` to compute them, or aggregate with --draft (`make paper DRAFT=1`) to render red "
            "marks in their place. Missing:\n" + "\n".join(lines)
        )

    merged_dir = results_dir / MERGED_DIR
    written = []
    for plans in complete:
        path = merged_dir / merged_name(plans[0])
        cell = merge_shards(plans, results_dir)
        if not path.is_file() or path.read_text(encoding="utf-8") != cell_json(cell):
            write_cell(path, cell)  # an unchanged file keeps its time, so `make paper` has nothing to redo
        written.append(path)

    expected = set(written)
    incomplete = {merged_dir / merged_name(plans[0]) for plans in by_key.values()} - expected
    for stale in merged_dir.rglob("*.json") if merged_dir.is_dir() else []:
        if stale not in expected and stale.name != MISSING_FILE:
            reason = "a shard of it is missing" if stale in incomplete else "the grid no longer has this cell"
            logger.info("Removing %s: %s", stale, reason)
            stale.unlink()
    missing_path = merged_dir / MISSING_FILE
    if holes:
        write_text_atomically(missing_path, json.dumps([asdict(hole) for hole in holes], indent=1) + "\n")
        logger.warning("Draft: %d merged results are incomplete and show as red marks; %s lists them",
                       len(holes), missing_path)
    else:
        missing_path.unlink(missing_ok=True)
    shards = sum(len(plans) for plans in complete)
    logger.info("Merged %d shard cells into %d files in %s", shards, len(written), merged_dir)
    return written, holes
