"""``make status``: which cells of the grid are done, running, failed or missing, by task.

A cell is done when its file is finished (``cells.finished``), running when
a live worker holds its group's claim, failed when its group left a failure
record, and missing otherwise. Nothing is loaded but the plans and the files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.experiments import claims
from pipeline.experiments.cells import PromptGroup, finished

STATES = ("done", "running", "failed", "missing")


def cell_states(groups: list[PromptGroup], results_dir: Path) -> list[tuple[PromptGroup, str, str]]:
    """Return (group, cell description, state) for every cell of ``groups``."""
    rows = []
    for group in groups:
        failure = claims.failure_path(results_dir, group.key)
        running = claims.held(results_dir, group.key)
        for plan in group.plans:
            if finished(plan, results_dir):
                state = "done"
            elif running:
                state = "running"
            elif failure.is_file():
                state = "failed"
            else:
                state = "missing"
            rows.append((group, plan.describe(), state))
    return rows


def report(groups: list[PromptGroup], results_dir: Path, listed: int = 10) -> str:
    """Return the status table: counts per task and state, then the failures and the first missing cells."""
    rows = cell_states(groups, results_dir)
    by_task: dict[str, Counter] = {}
    for group, _, state in rows:
        by_task.setdefault(group.task, Counter())[state] += 1
    width = max([len("task"), *(len(task) for task in by_task)])
    lines = [f"{'task':<{width}}  " + "  ".join(f"{state:>7}" for state in STATES)]
    for task, counts in by_task.items():
        lines.append(f"{task:<{width}}  " + "  ".join(f"{counts[state]:>7}" for state in STATES))
    totals = Counter(state for _, _, state in rows)
    lines.append(f"{'all':<{width}}  " + "  ".join(f"{totals[state]:>7}" for state in STATES))

    failed_groups = {group.key: group for group, _, state in rows if state == "failed"}
    for key, group in failed_groups.items():
        record = json.loads(claims.failure_path(results_dir, key).read_text(encoding="utf-8"))
        lines.append(f"failed: {group.describe()}: {record.get('error')} ({record.get('host')}, {record.get('time')})")
    running = {group.key: group for group, _, state in rows if state == "running"}
    for key, group in running.items():
        record = claims.read_claim(claims.claim_path(results_dir, key)) or {}
        lines.append(f"running: {group.describe()} on {record.get('host')} (process {record.get('pid')}, "
                     f"since {record.get('started')})")
    missing = [description for _, description, state in rows if state == "missing"]
    for description in missing[:listed]:
        lines.append(f"missing: {description}")
    if len(missing) > listed:
        lines.append(f"missing: and {len(missing) - listed} more")
    return "\n".join(lines)
