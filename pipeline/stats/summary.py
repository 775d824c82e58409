"""Intervals for every cell and paired differences against CircuitKV, written next to the cells.

``python -m pipeline.stats.summary`` reads ``data/results/cells`` and writes
``data/results/summary.json``:

- ``cells``: per cell, the mean score over samples with its 95% bootstrap
  interval and the number of samples;
- ``paired``: per task, protocol and budget, each other method's score minus
  CircuitKV's on the prompts both were run on, with the interval of the mean
  difference and the share of resamples in which it is positive. The full
  cache is compared at every budget.

Cells of a stochastic method that differ only in their method seed are
averaged per prompt first, so a prompt counts once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.experiments.schema import CellResult, ResultsError, read_cell
from pipeline.stats.bootstrap import bootstrap_mean, paired_difference

logger = logging.getLogger(__name__)

REFERENCE_METHOD = "circuitkv"


def _group_key(cell: CellResult) -> tuple:
    config = cell.config
    return (config.task, config.protocol, config.method, config.budget, config.budget_ratio)


def per_prompt_scores(cells: list[CellResult]) -> dict[str, float]:
    """Score of each prompt, averaged over the cells (method seeds) given."""
    totals: dict[str, list[float]] = defaultdict(list)
    for cell in cells:
        for sample in cell.samples:
            totals[sample.sample_id].append(sample.score)
    return {sample_id: sum(scores) / len(scores) for sample_id, scores in totals.items()}


def summarize(cells: list[tuple[Path, CellResult]], reference: str = REFERENCE_METHOD) -> dict:
    """Build the summary of ``cells`` (see the module docstring)."""
    groups: dict[tuple, list[tuple[Path, CellResult]]] = defaultdict(list)
    for path, cell in cells:
        groups[_group_key(cell)].append((path, cell))

    scores = {key: per_prompt_scores([cell for _, cell in members]) for key, members in groups.items()}
    summary_cells = []
    for key, members in sorted(groups.items(), key=lambda item: str(item[0])):
        task, protocol, method, budget, ratio = key
        interval = bootstrap_mean(list(scores[key].values()))
        summary_cells.append({
            "task": task, "protocol": protocol, "method": method, "budget": budget, "budget_ratio": ratio,
            "num_seeds": len(members), "files": [str(path) for path, _ in members], **asdict(interval),
        })

    paired = []
    for key in sorted(groups, key=str):
        task, protocol, method, budget, ratio = key
        if method != reference:
            continue
        ours = scores[key]
        for other_key, theirs in scores.items():
            other_task, other_protocol, other_method, other_budget, other_ratio = other_key
            same_setting = (other_task, other_protocol) == (task, protocol) and other_method != reference
            is_full_cache = other_budget is None and other_ratio is None
            comparable = (other_budget, other_ratio) == (budget, ratio) or is_full_cache
            if not (same_setting and comparable):
                continue
            shared = sorted(set(ours) & set(theirs))
            if not shared:
                logger.warning("%s and %s share no prompts on %s; no paired difference", other_method, method, task)
                continue
            difference = paired_difference([theirs[i] for i in shared], [ours[i] for i in shared])
            paired.append({
                "task": task, "protocol": protocol, "budget": budget, "budget_ratio": ratio,
                "method": other_method, "against": reference, "num_samples": len(shared),
                "mean_difference": difference.interval.mean, "low": difference.interval.low,
                "high": difference.interval.high, "share_positive": difference.share_positive,
                "excludes_zero": difference.excludes_zero,
            })
    return {"confidence": 0.95, "resamples": 1000, "cells": summary_cells, "paired": paired}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stats.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=Path("data/results"),
                        help="directory with cells/ (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default: RESULTS_DIR/summary.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cell_dir = args.results_dir / "cells"
    paths = sorted(path for path in cell_dir.rglob("*.json") if not path.name.startswith("."))
    try:
        if not paths:
            raise ResultsError(f"{cell_dir}: no result files found; run `make results` first.")
        cells = [(path.relative_to(args.results_dir), read_cell(path)) for path in paths]
    except ResultsError as error:
        logger.error("%s", error)
        return 2
    output = args.output or args.results_dir / "summary.json"
    summary = summarize(cells)
    write_text_atomically(output, json.dumps(summary, indent=1) + "\n")
    logger.info("Wrote %s: %d cells, %d paired differences", output, len(summary["cells"]), len(summary["paired"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
