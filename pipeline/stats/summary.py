"""Intervals for every cell and paired differences between methods, written next to the cells.

``python -m pipeline.stats.summary`` reads ``data/results/merged`` and writes
``data/results/summary.json``:

- ``cells``: per cell, the mean score over samples with its 95% bootstrap
  interval and the number of samples; the same for the answer's mean
  negative log-likelihood per token (``answer_nll``) and for the leading
  tokens shared with the full cache's output (``agreement_tokens``); for a
  stochastic method run with several seeds, each seed's mean and their
  sample standard deviation;
- ``paired``: per task, prompt length, protocol and budget, every method's
  score minus every other method's on the prompts both were run on, with the
  interval of the mean difference and the share of resamples in which it is
  positive, and the same for the answer NLL (``answer_nll``). Pairs with
  CircuitKV always subtract CircuitKV (``against``); the full cache is
  compared at every budget;
- ``sweep``: the needle sweep's mean score per prompt length and needle depth,
  per method and budget;
- ``length_bins``: LongBench-E scores per length bin (0-4k, 4-8k, 8k+).

Cells of a stochastic method that differ only in their method seed are
averaged per prompt first, so a prompt counts once.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from collections import defaultdict
from dataclasses import asdict
from itertools import combinations
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.experiments.schema import MERGED_DIR, MISSING_FILE, CellResult, ResultsError, read_cell
from pipeline.stats.bootstrap import CONFIDENCE, RESAMPLES, bootstrap_mean, paired_difference
from pipeline.stats.breakdowns import length_bins, sweep_grids

logger = logging.getLogger(__name__)

REFERENCE_METHOD = "circuitkv"
KEY_FIELDS = ("task", "context_tokens", "protocol", "method", "budget", "budget_ratio")


def _group_key(cell: CellResult) -> tuple:
    config = cell.config
    return (config.task, config.context_tokens, config.protocol, config.method, config.budget, config.budget_ratio)


def per_prompt_scores(cells: list[CellResult], field: str = "score") -> dict[str, float]:
    """Return each prompt's ``field`` (score, answer_nll, agreement_tokens), averaged over the cells given.

    The cells are the method seeds of one setting. Prompts whose samples lack
    the field (older files) are left out.
    """
    totals: dict[str, list[float]] = defaultdict(list)
    for cell in cells:
        for sample in cell.samples:
            value = getattr(sample, field)
            if value is not None:
                totals[sample.sample_id].append(float(value))
    return {sample_id: sum(values) / len(values) for sample_id, values in totals.items()}


def fidelity(members: list[CellResult]) -> dict:
    """Return the mean answer NLL and agreement over prompts, each with its interval, or None when absent."""
    result = {}
    for field in ("answer_nll", "agreement_tokens"):
        values = list(per_prompt_scores(members, field).values())
        result[field] = asdict(bootstrap_mean(values)) if values else None
    return result


def _ordered(first: tuple, second: tuple, reference: str) -> tuple[tuple, tuple]:
    """Return (method, against): CircuitKV is always subtracted, other pairs by name."""
    if first[3] == reference or (second[3] != reference and second[3] < first[3]):
        return second, first
    return first, second


def paired_values(first: dict[str, float], second: dict[str, float]) -> tuple[list[float], list[float]]:
    """Return the values of the prompts both dicts have, in the same prompt order."""
    shared = sorted(set(first) & set(second))
    return [first[i] for i in shared], [second[i] for i in shared]


def _paired_nll(ours: dict[str, float], theirs: dict[str, float]) -> dict | None:
    """Return the paired difference of answer NLL (lower is better), or None without shared prompts."""
    ours_values, theirs_values = paired_values(ours, theirs)
    if not ours_values:
        return None
    difference = paired_difference(ours_values, theirs_values)
    return {"mean_difference": difference.interval.mean, "low": difference.interval.low,
            "high": difference.interval.high, "share_positive": difference.share_positive}


def summarize(cells: list[tuple[Path, CellResult]], reference: str = REFERENCE_METHOD) -> dict:
    """Build the summary of ``cells`` (see the module docstring)."""
    groups: dict[tuple, list[tuple[Path, CellResult]]] = defaultdict(list)
    for path, cell in cells:
        groups[_group_key(cell)].append((path, cell))

    scores = {key: per_prompt_scores([cell for _, cell in members]) for key, members in groups.items()}
    nlls = {key: per_prompt_scores([cell for _, cell in members], "answer_nll") for key, members in groups.items()}
    summary_cells = []
    for key, members in sorted(groups.items(), key=lambda item: str(item[0])):
        interval = bootstrap_mean(list(scores[key].values()))
        seed_means = [cell.mean_score for _, cell in members]
        summary_cells.append({
            **dict(zip(KEY_FIELDS, key)),
            "num_seeds": len(members),
            "seed_means": seed_means,
            "seed_std": statistics.stdev(seed_means) if len(seed_means) > 1 else 0.0,
            "num_truncated": sum(sample.truncated for sample in members[0][1].samples),
            "files": [str(path) for path, _ in members],
            **asdict(interval),
            **fidelity([cell for _, cell in members]),
        })

    # Methods are compared within one task, length and protocol, at one budget; the full cache joins every budget.
    settings: dict[tuple, list[tuple]] = defaultdict(list)
    for key in groups:
        settings[key[:3]].append(key)
    paired = []
    for setting in sorted(settings, key=str):
        keys = sorted(settings[setting], key=str)
        for first, second in combinations(keys, 2):
            one_full = (first[4], first[5]) == (None, None) or (second[4], second[5]) == (None, None)
            if (first[4], first[5]) != (second[4], second[5]) and not one_full:
                continue
            method, against = _ordered(first, second, reference)
            budget = against if (method[4], method[5]) == (None, None) else method
            method_scores, against_scores = paired_values(scores[method], scores[against])
            if not method_scores:
                logger.warning("%s and %s share no prompts on %s; no paired difference", method[3], against[3],
                               setting[0])
                continue
            difference = paired_difference(method_scores, against_scores)
            paired.append({
                "task": setting[0], "context_tokens": setting[1], "protocol": setting[2],
                "budget": budget[4], "budget_ratio": budget[5],
                "method": method[3], "against": against[3], "num_samples": len(method_scores),
                "mean_difference": difference.interval.mean, "low": difference.interval.low,
                "high": difference.interval.high, "share_positive": difference.share_positive,
                "excludes_zero": difference.excludes_zero,
                "answer_nll": _paired_nll(nlls[method], nlls[against]),
            })
    return {
        "confidence": CONFIDENCE, "resamples": RESAMPLES, "cells": summary_cells, "paired": paired,
        "sweep": sweep_grids(cells), "length_bins": length_bins(cells),
    }


def _mean_text(entry: dict | None, digits: int) -> str:
    return "-" if entry is None else f"{entry['mean']:.{digits}f}"


def format_table(cells: list[dict]) -> str:
    """Return the summary's cells as aligned text: setting, score, interval, samples, truncated prompts, fidelity."""
    header = (
        f"{'task':<22} {'length':>6} {'method':<14} {'budget':>6} {'mean':>6} {'95% interval':>15} "
        f"{'n':>4} {'truncated':>9} {'nll':>6} {'agree':>6}"
    )
    lines = [header]
    for cell in cells:
        budget = cell["budget"] if cell["budget_ratio"] is None else f"{cell['budget_ratio']:g}n"
        interval = f"[{cell['low']:.1f}, {cell['high']:.1f}]"
        lines.append(
            f"{cell['task']:<22} {cell['context_tokens'] or '-':>6} {cell['method']:<14} {budget or 'full':>6} "
            f"{cell['mean']:>6.1f} {interval:>15} {cell['num_samples']:>4} {cell['num_truncated']:>9} "
            f"{_mean_text(cell['answer_nll'], 3):>6} {_mean_text(cell['agreement_tokens'], 1):>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stats.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=Path("data/results"),
                        help="directory with cells/ (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default: RESULTS_DIR/summary.json)")
    parser.add_argument("--table", action="store_true", help="also print each cell's score with its interval, answer NLL and agreement")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cell_dir = args.results_dir / MERGED_DIR
    paths = sorted(path for path in cell_dir.rglob("*.json") if not path.name.startswith(".")
                   and path.name != MISSING_FILE)
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
    if args.table:
        print(format_table(summary["cells"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
