"""Decide the paper's comparative wording from the results, so templates never do."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.render.latex import Latex, format_number
from pipeline.render.results import METHOD_LABELS, OUR_METHOD, macro_key, prompt_scores, score_pivot, task_order
from pipeline.render.tasks import task_label
from pipeline.stats.bootstrap import RESAMPLES, SEED, PairedDifference, paired_difference, paired_task_average
from pipeline.stats.summary import paired_values

# A RULER task (accuracy, 0-100) on which the full cache scores below this is
# uninformative about compression; the quick profile picks its tasks by the same bound.
# Overlap metrics such as ROUGE-L have no such scale.
WEAK_TASK_SCORE = 30.0


@dataclass(frozen=True)
class Comparison:
    """CircuitKV against the strongest other compressed method at one budget.

    The verdict rests on the paired bootstrap of the task-averaged difference
    (ours minus baseline): "improves on" or "falls behind" only when its 95%
    interval excludes zero. Per task, ``tasks_won`` and ``tasks_lost`` are the
    tasks where the paired interval against that task's best baseline lies
    above or below zero.
    """

    budget: int
    verdict: str  # "improves on", "falls behind" or "cannot be told apart from"
    baseline: str  # display name of the strongest baseline
    tied: list[str]  # display names of other baselines with the same average
    ours_key: str
    baseline_key: str
    difference_key: str  # the macros KEY/mean, KEY/low and KEY/high give the interval
    tasks_won: list[str]
    tasks_lost: list[str]
    difference: PairedDifference


def verdict(difference: PairedDifference) -> str:
    """Return the phrase for a paired difference (ours minus baseline)."""
    if difference.interval.low > 0:
        return "improves on"
    if difference.interval.high < 0:
        return "falls behind"
    return "cannot be told apart from"


def compare(frame: pd.DataFrame, cells: list) -> list[Comparison]:
    """Compare CircuitKV with the strongest baseline at each budget where both have complete averages."""
    pivot = score_pivot(frame)
    scores = prompt_scores(cells)
    comparisons = []
    for budget in sorted(pivot.index.get_level_values("budget").unique()):
        if budget == 0 or (OUR_METHOD, budget) not in pivot.index:
            continue
        rows = pivot.xs(budget, level="budget")
        baselines = rows.drop(index=[OUR_METHOD, "full"], errors="ignore").dropna(subset=["avg"])
        if baselines.empty or pd.isna(rows.loc[OUR_METHOD, "avg"]):
            continue

        best = baselines["avg"].idxmax()
        tied = [
            METHOD_LABELS.get(name, name) for name in baselines.index
            if name != best and baselines.loc[name, "avg"] == baselines.loc[best, "avg"]
        ]
        tasks = [column for column in rows.columns if column != "avg"]
        average = paired_task_average(
            [paired_values(scores[(task, OUR_METHOD, budget)], scores[(task, best, budget)]) for task in tasks]
        )
        won, lost = [], []
        for task in tasks:
            strongest = baselines[task].idxmax()
            ours, theirs = paired_values(scores[(task, OUR_METHOD, budget)], scores[(task, strongest, budget)])
            difference = paired_difference(ours, theirs)
            if difference.interval.low > 0:
                won.append(task_label(task))
            elif difference.interval.high < 0:
                lost.append(task_label(task))
        comparisons.append(
            Comparison(
                budget=int(budget),
                verdict=verdict(average),
                baseline=METHOD_LABELS.get(best, best),
                tied=tied,
                ours_key=macro_key("avg", OUR_METHOD, budget),
                baseline_key=macro_key("avg", best, budget),
                difference_key=f"diff/{best}/b{budget}",
                tasks_won=won,
                tasks_lost=lost,
                difference=average,
            )
        )
    return comparisons


@dataclass(frozen=True)
class Likelihood:
    """CircuitKV's answer NLL (lower is better) against the baselines at one budget.

    ``tasks_lower`` lists the tasks where CircuitKV's paired NLL interval lies
    below zero against every baseline; ``tasks_higher`` those where it lies
    above zero against at least one.
    """

    budget: int
    ours_key: str
    baseline: str  # display name of the baseline with the lowest mean NLL
    baseline_key: str
    full_key: str | None
    tasks_lower: list[str]
    tasks_higher: list[str]


def likelihoods(frame: pd.DataFrame, cells: list) -> tuple[list[Likelihood], list[tuple[str, Latex, str]]]:
    """Compare answer NLL per budget, and return the comparisons with the macros they cite.

    Macros ``nll/METHOD/bB`` (and ``nll/full/all``) hold the mean over tasks of
    each task's mean NLL per token. Budgets where a method lacks NLL on some
    task are skipped.
    """
    nll = prompt_scores(cells, field="answer_nll")
    tasks = [task for task in task_order(frame) if any(key[0] == task for key in nll)]
    means = {}
    for (task, method, budget), values in nll.items():
        if values:
            means.setdefault((method, budget), {})[task] = sum(values.values()) / len(values)
    # Only methods and budgets with NLL on every task get a task average.
    complete = {
        key: sum(by_task.values()) / len(by_task) for key, by_task in means.items() if len(by_task) == len(tasks)
    }

    macros = []
    for (method, budget), value in sorted(complete.items()):
        key = macro_key("nll", method, budget)
        source = Latex(f"mean over tasks and prompts of answer_nll in the {method} cells at budget {budget or 'full'}")
        macros.append((key, format_number(value, 2), source))

    results = []
    budgets = sorted({budget for method, budget in complete if budget})
    for budget in budgets:
        if (OUR_METHOD, budget) not in complete:
            continue
        baselines = {m: v for (m, b), v in complete.items() if b == budget and m not in (OUR_METHOD, "full")}
        if not baselines:
            continue
        best = min(baselines, key=baselines.get)
        lower, higher = [], []
        for task in tasks:
            intervals = [
                paired_difference(*paired_values(nll[(task, OUR_METHOD, budget)], nll[(task, other, budget)])).interval
                for other in baselines
            ]
            if all(interval.high < 0 for interval in intervals):
                lower.append(task_label(task))
            elif any(interval.low > 0 for interval in intervals):
                higher.append(task_label(task))
        results.append(
            Likelihood(
                budget=int(budget),
                ours_key=macro_key("nll", OUR_METHOD, budget),
                baseline=METHOD_LABELS.get(best, best),
                baseline_key=macro_key("nll", best, budget),
                full_key=macro_key("nll", "full", 0) if ("full", 0) in complete else None,
                tasks_lower=lower,
                tasks_higher=higher,
            )
        )
    return results, macros


def headline(comparisons: list[Comparison]) -> Comparison | None:
    """Return the comparison the abstract and conclusion report.

    That is the smallest budget whose interval excludes zero, or the smallest
    budget when no interval does, so that a budget where every method scores
    alike does not hide a measured difference.
    """
    decided = [comparison for comparison in comparisons if comparison.difference.excludes_zero]
    if decided:
        return decided[0]
    return comparisons[0] if comparisons else None


def difference_macros(comparisons: list[Comparison]) -> list[tuple[str, Latex, str]]:
    """Return the result macros of each comparison's interval: ``KEY/mean``, ``KEY/low`` and ``KEY/high``."""
    macros = []
    for comparison in comparisons:
        interval = comparison.difference.interval
        source = Latex(
            f"paired bootstrap ({RESAMPLES} resamples, seed {SEED}) over the prompt-protocol cells, CircuitKV minus "
            f"{comparison.baseline} at budget {comparison.budget}, averaged over tasks"
        )
        for name in ("mean", "low", "high"):
            text = format_number(getattr(interval, name))
            macros.append((f"{comparison.difference_key}/{name}", Latex(text.replace("-", "$-$", 1)), source))
    return macros


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
        WeakTask(task_label(task), macro_key(task, "full", 0))
        for task, score in full.items()
        if task in accuracy_tasks and not pd.isna(score) and score < threshold
    ]
