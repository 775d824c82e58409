"""Scores broken down within a cell: the needle sweep's length x depth grid and LongBench-E's length bins."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pipeline.benchmarks import longbench, ruler
from pipeline.experiments.schema import CellResult

BIN_ORDER = ("0-4k", "4-8k", "8k+")


def _setting(cell: CellResult) -> tuple:
    config = cell.config
    return (config.task, config.protocol, config.method, config.budget, config.budget_ratio)


def sweep_grids(cells: list[tuple[Path, CellResult]]) -> list[dict]:
    """Return one grid per needle-sweep setting (protocol, method, budget).

    ``scores[i][j]`` is the mean score at ``lengths[i]`` and ``depths[j]``
    (percent of the context before the needle), averaged over the samples
    and method seeds at that point; None where no sample ran.
    """
    points: dict[tuple, dict[tuple[int, int], list[float]]] = defaultdict(lambda: defaultdict(list))
    for _, cell in cells:
        if cell.config.task != ruler.SWEEP_TASK:
            continue
        for sample in cell.samples:
            points[_setting(cell)][ruler.sweep_point(sample.sample_id)].append(sample.score)

    grids = []
    for setting, by_point in sorted(points.items(), key=lambda item: str(item[0])):
        lengths = sorted({length for length, _ in by_point})
        depths = sorted({depth for _, depth in by_point})
        scores = [
            [
                sum(by_point[(length, depth)]) / len(by_point[(length, depth)]) if (length, depth) in by_point else None
                for depth in depths
            ]
            for length in lengths
        ]
        _, protocol, method, budget, ratio = setting
        grids.append({
            "protocol": protocol, "method": method, "budget": budget, "budget_ratio": ratio,
            "lengths": lengths, "depths": depths, "scores": scores,
        })
    return grids


def length_bins(cells: list[tuple[Path, CellResult]]) -> list[dict]:
    """Return, per LongBench-E cell, the mean score and sample count in each length bin (0-4k, 4-8k, 8k+).

    Samples without a recorded length are left out; a cell with none has no entry.
    """
    entries = []
    for path, cell in cells:
        if cell.config.benchmark != "longbench":
            continue
        by_bin: dict[str, list[float]] = defaultdict(list)
        for sample in cell.samples:
            if sample.length is not None:
                by_bin[longbench.length_bin(sample.length)].append(sample.score)
        if not by_bin:
            continue
        task, protocol, method, budget, ratio = _setting(cell)
        entries.append({
            "task": task, "protocol": protocol, "method": method, "budget": budget, "budget_ratio": ratio,
            "method_seed": cell.config.method_seed, "file": str(path),
            "bins": {
                name: {"mean": sum(scores) / len(scores), "num_samples": len(scores)}
                for name, scores in sorted(by_bin.items(), key=lambda item: BIN_ORDER.index(item[0]))
            },
        })
    return entries
