"""Compare ``make results JOBS=1`` and ``JOBS=N`` on the same cells: ``python -m pipeline.bench.jobs``.

Each setting runs the same small grid into its own empty results folder: one
process with every CPU thread, then N worker processes with ``cores / N``
threads each, every worker loading its own model copy. The script prints the
wall time, cells per minute and speedup of each, and checks that both wrote
the same cells with the same answers. It writes nothing under data/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from pipeline.benchmarks.haystack import ESSAYS_DIR_ENV
from pipeline.experiments.runner import GridConfig, RunOptions, run_grid
from pipeline.experiments.schema import read_cell

logger = logging.getLogger(__name__)


def answers(results_dir: Path) -> dict[str, list]:
    """Return each cell's predictions and scores by file name, for comparing two runs."""
    return {
        path.name: [(sample.sample_id, sample.prediction, sample.score) for sample in read_cell(path).samples]
        for path in sorted((results_dir / "cells").rglob("*.json"))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the second run (default: 2)")
    parser.add_argument("--task", default="niah_multikey_1")
    parser.add_argument("--prompts", type=int, default=4, help="prompts, one shard each (default: 4)")
    parser.add_argument("--methods", default="full,snapkv,circuitkv")
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--context-tokens", type=int, default=4096)
    parser.add_argument("--model", default="default")
    parser.add_argument("--essays-dir", type=Path, default=os.environ.get(ESSAYS_DIR_ENV) or None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as scratch:
        for jobs in (1, args.jobs):
            results_dir = Path(scratch) / f"jobs{jobs}"
            config = GridConfig(
                tasks=[args.task], methods=args.methods.split(","), budgets=[args.budget],
                num_samples=args.prompts, shard_size=1, context_lengths=[args.context_tokens], model=args.model,
                device="cpu", results_dir=results_dir, essays_dir=args.essays_dir,
            )
            started = time.perf_counter()
            written = run_grid(config, RunOptions(jobs=jobs))
            seconds = time.perf_counter() - started
            figures.append({"jobs": jobs, "threads_per_worker": max(1, (os.cpu_count() or 1) // jobs),
                            "cells": len(written), "seconds": round(seconds, 1),
                            "cells_per_minute": round(60 * len(written) / seconds, 2), "answers": answers(results_dir)})

    same = figures[0]["answers"] == figures[1]["answers"]
    print(f"{os.cpu_count()} cores; {args.prompts} prompts of {args.task} at {args.context_tokens} tokens, "
          f"methods {args.methods} at budget {args.budget}, one prompt per group; wall time includes model loading")
    for row in figures:
        speedup = figures[0]["seconds"] / row["seconds"]
        print(f"JOBS={row['jobs']}: {row['threads_per_worker']} torch threads per worker, {row['cells']} cells in "
              f"{row['seconds']} s, {row['cells_per_minute']} cells/min, speedup {speedup:.2f}")
    print(f"same cells and answers: {same}")
    print(json.dumps([{key: value for key, value in row.items() if key != "answers"} for row in figures]))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
