"""Decide the paper's comparative wording from the results, so templates never do."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.render.latex import Latex, format_number, join_words, signed_number
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
    verdict: str  # "improves on", "falls behind" or "matches"
    baseline: str  # display name of the strongest baseline
    tied: list[str]  # display names of other baselines with the same average
    ours_key: str
    baseline_key: str
    difference_key: str  # the macros KEY/mean, KEY/low and KEY/high give the interval
    tasks_won: list[str]
    tasks_lost: list[str]
    difference: PairedDifference

    @property
    def strongest(self) -> str:
        """The strongest baseline as prose, naming every baseline tied with it."""
        if not self.tied:
            return f"{self.baseline}, the strongest baseline"
        return f"{join_words([self.baseline, *self.tied])}, which tie as the strongest baselines"

    @property
    def them(self) -> str:
        """The pronoun for ``strongest``."""
        return "them" if self.tied else "it"


def verdict(difference: PairedDifference) -> str:
    """Return the phrase for a paired difference (ours minus baseline)."""
    if difference.interval.low > 0:
        return "improves on"
    if difference.interval.high < 0:
        return "falls behind"
    return "matches"


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
    shown = set(frame.method)  # the table's methods; ablation variants are not baselines
    nll = {key: values for key, values in prompt_scores(cells, field="answer_nll").items() if key[1] in shown}
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
    for (method, budget), by_task in sorted(means.items()):
        for task, value in by_task.items():
            source = Latex(f"mean over prompts of answer_nll, {task} {method} cell at budget {budget or 'full'}")
            macros.append((macro_key(f"nll/{task}", method, budget), format_number(value, 2), source))
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
            macros.append((f"{comparison.difference_key}/{name}", signed_number(getattr(interval, name)), source))
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


@dataclass(frozen=True)
class Story:
    """What the abstract, introduction and conclusion say, decided from the comparisons.

    ``main`` is the comparison at Table 1's budget; ``other`` the first other
    budget whose interval excludes zero, when the main one does not.
    ``outcome`` is "positive" (CircuitKV improves on the strongest baseline at
    some budget and falls behind at none), "negative" (the reverse), "mixed"
    (both) or "tie" (no interval excludes zero). ``likelihood`` is the answer
    NLL comparison at the main budget, and ``lower_nll`` whether CircuitKV's
    NLL is below every baseline's on at least one task there.
    """

    main: Comparison | None
    other: Comparison | None
    outcome: str
    likelihood: Likelihood | None
    lower_nll: bool
    higher_nll: bool


def story(comparisons: list[Comparison], likelihood_list: list[Likelihood], main_budget: int) -> Story:
    """Decide the headline claims from the comparisons at every budget."""
    main = next((comparison for comparison in comparisons if comparison.budget == main_budget), None)
    other = None
    if main is None or not main.difference.excludes_zero:
        other = next((c for c in comparisons if c.budget != main_budget and c.difference.excludes_zero), None)
    verdicts = {comparison.verdict for comparison in comparisons}
    if {"improves on", "falls behind"} <= verdicts:
        outcome = "mixed"
    elif "improves on" in verdicts:
        outcome = "positive"
    elif "falls behind" in verdicts:
        outcome = "negative"
    else:
        outcome = "tie"
    likelihood = next((item for item in likelihood_list if item.budget == main_budget), None)
    return Story(
        main=main,
        other=other,
        outcome=outcome,
        likelihood=likelihood,
        lower_nll=bool(likelihood and likelihood.tasks_lower),
        higher_nll=bool(likelihood and likelihood.tasks_higher),
    )


@dataclass(frozen=True)
class TaskNote:
    """CircuitKV on one task at one budget against that task's strongest baseline.

    ``verdict`` follows the paired interval on the task's prompts.
    ``nll_verdict`` compares the answer NLL with the baseline lowest on it. ``fails``
    marks a task where CircuitKV falls behind, or scores zero while the full
    cache solves part of the task, so the text gives it its own paragraph.
    """

    label: str
    task: str
    budget: int
    verdict: str
    ours_key: str
    baseline: str
    baseline_key: str
    full_key: str | None
    nll_ours_key: str | None
    nll_baseline: str | None  # display name of the baseline with the lowest answer NLL on this task
    nll_baseline_key: str | None
    nll_verdict: str | None  # "lower than", "higher than" or "level with" the baseline's, by the paired interval
    fails: bool


def task_notes(frame: pd.DataFrame, cells: list, main_budget: int) -> list[TaskNote]:
    """One note per task at every budget CircuitKV ran, main budget first."""
    pivot = score_pivot(frame)
    scores = prompt_scores(cells)
    nll = prompt_scores(cells, field="answer_nll")
    budgets = sorted(b for b in pivot.index.get_level_values("budget").unique() if b and (OUR_METHOD, b) in pivot.index)
    budgets.sort(key=lambda budget: budget != main_budget)
    full = pivot.loc[("full", 0)] if ("full", 0) in pivot.index else None
    notes = []
    for task in task_order(frame):
        for budget in budgets:
            rows = pivot.xs(budget, level="budget")
            baselines = rows.drop(index=[OUR_METHOD, "full"], errors="ignore")[task].dropna()
            ours_score = rows.loc[OUR_METHOD, task]
            if baselines.empty or pd.isna(ours_score):
                continue
            best = baselines.idxmax()
            difference = paired_difference(*paired_values(scores[(task, OUR_METHOD, budget)],
                                                          scores[(task, best, budget)]))
            full_score = None if full is None else full[task]
            fails = difference.interval.high < 0 or (
                ours_score == 0 and full_score is not None and not pd.isna(full_score) and full_score > 0
            )
            # The answer NLL is compared with the baseline whose NLL on this task is lowest.
            nll_means = {
                method: sum(values.values()) / len(values)
                for method in baselines.index if (values := nll.get((task, method, budget)))
            }
            has_nll = bool(nll.get((task, OUR_METHOD, budget)) and nll_means)
            nll_best = min(nll_means, key=nll_means.get) if nll_means else None
            nll_verdict = None
            if has_nll:
                interval = paired_difference(*paired_values(nll[(task, OUR_METHOD, budget)],
                                                            nll[(task, nll_best, budget)])).interval
                nll_verdict = "level with"
                if interval.high < 0:
                    nll_verdict = "lower than"
                elif interval.low > 0:
                    nll_verdict = "higher than"
            notes.append(
                TaskNote(
                    label=task_label(task),
                    task=task,
                    budget=int(budget),
                    verdict=verdict(difference),
                    ours_key=macro_key(task, OUR_METHOD, budget),
                    baseline=METHOD_LABELS.get(best, best),
                    baseline_key=macro_key(task, best, budget),
                    full_key=None if full_score is None or pd.isna(full_score) else macro_key(task, "full", 0),
                    nll_ours_key=macro_key(f"nll/{task}", OUR_METHOD, budget) if has_nll else None,
                    nll_baseline=METHOD_LABELS.get(nll_best, nll_best) if has_nll else None,
                    nll_baseline_key=macro_key(f"nll/{task}", nll_best, budget) if has_nll else None,
                    nll_verdict=nll_verdict,
                    fails=bool(fails),
                )
            )
    return notes
