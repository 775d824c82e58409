"""Decide the paper's comparative wording from the results, so templates never do."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.render.results import METHOD_LABELS, OUR_METHOD, TASK_LABELS, macro_key, score_pivot

# A RULER task (accuracy, 0-100) on which the full cache scores below this is
# uninformative about compression. Overlap metrics such as ROUGE-L have no such scale.
WEAK_TASK_SCORE = 50.0

# Average differences within this many points (0-100 scale) read as "matches".
# NOTE: a fixed margin, not a statistical test; paired bootstrap intervals replace it later.
TIE_MARGIN = 0.5


@dataclass(frozen=True)
class Comparison:
    """CircuitKV against the strongest other compressed method at one budget."""

    budget: int
    verdict: str  # "improves on", "matches" or "falls behind"
    baseline: str  # display name of the strongest baseline
    ours_key: str
    baseline_key: str
    tasks_won: list[str]
    tasks_lost: list[str]


def verdict(difference: float, margin: float = TIE_MARGIN) -> str:
    """Phrase for an average difference (ours minus baseline) in points."""
    if difference > margin:
        return "improves on"
    if difference < -margin:
        return "falls behind"
    return "matches"


def compare(frame: pd.DataFrame) -> list[Comparison]:
    """Compare CircuitKV with the strongest baseline at each budget where both have complete averages."""
    pivot = score_pivot(frame)
    comparisons = []
    for budget in sorted(pivot.index.get_level_values("budget").unique()):
        if budget == 0 or (OUR_METHOD, budget) not in pivot.index:
            continue
        rows = pivot.xs(budget, level="budget")
        baselines = rows.drop(index=[OUR_METHOD, "full"], errors="ignore").dropna(subset=["avg"])
        ours = rows.loc[OUR_METHOD]
        if baselines.empty or pd.isna(ours["avg"]):
            continue

        best = baselines["avg"].idxmax()
        tasks = [column for column in rows.columns if column != "avg"]
        strongest = baselines[tasks].max()
        won = [TASK_LABELS.get(t, t) for t in tasks if ours[t] > strongest[t] + TIE_MARGIN]
        lost = [TASK_LABELS.get(t, t) for t in tasks if ours[t] < strongest[t] - TIE_MARGIN]
        comparisons.append(
            Comparison(
                budget=int(budget),
                verdict=verdict(float(ours["avg"] - baselines.loc[best, "avg"])),
                baseline=METHOD_LABELS.get(best, best),
                ours_key=macro_key("avg", OUR_METHOD, budget),
                baseline_key=macro_key("avg", best, budget),
                tasks_won=won,
                tasks_lost=lost,
            )
        )
    return comparisons


@dataclass(frozen=True)
class WeakTask:
    """A task the uncompressed model mostly fails, with the key of its full-cache score."""

    label: str
    full_key: str


def weak_tasks(frame: pd.DataFrame, threshold: float = WEAK_TASK_SCORE) -> list[WeakTask]:
    """RULER tasks whose full-cache accuracy is below ``threshold``, in table order."""
    pivot = score_pivot(frame)
    if ("full", 0) not in pivot.index:
        return []
    full = pivot.loc[("full", 0)].drop("avg")
    accuracy_tasks = set(frame.loc[frame.benchmark == "ruler", "task"])
    return [
        WeakTask(TASK_LABELS.get(task, task), macro_key(task, "full", 0))
        for task, score in full.items()
        if task in accuracy_tasks and not pd.isna(score) and score < threshold
    ]
