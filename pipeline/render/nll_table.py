"""The answer-NLL table: every method at the main budget, per task and on average.

The appendix prints it in full, and Table 1 its last column.

The answer NLL is the mean negative log-likelihood per token of the reference
answer fed after the compressed cache (lower is better). It separates methods
where accuracy saturates, for instance when every compressed cache misses the
answer. Bold marks the lowest compressed NLL per column; on CircuitKV's row,
a superscript marks a column where the paired bootstrap interval of its
difference to that column's lowest baseline lies below zero (-) or above
zero (+).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pipeline.render.latex import Latex, format_number
from pipeline.render.results import METHOD_LABELS, METHOD_ORDER, OUR_METHOD, prompt_scores, task_order
from pipeline.render.tasks import task_label
from pipeline.stats.bootstrap import paired_task_average
from pipeline.stats.summary import paired_values

NLL_DIGITS = 2


@dataclass(frozen=True)
class NllRow:
    label: str
    method: str
    cells: list[Latex]


@dataclass(frozen=True)
class NllTable:
    budget: int
    columns: list[str]  # task labels, then "Avg."
    rows: list[NllRow]


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


def nll_table(frame: pd.DataFrame, cells: list, budget: int) -> NllTable | None:
    """Build the table at ``budget``; None when CircuitKV or every baseline lacks NLL on some task."""
    nll = prompt_scores(cells, field="answer_nll")
    tasks = task_order(frame)
    methods = [m for m in METHOD_ORDER if m in set(frame.method)]
    means = {}
    for method in methods:
        key_budget = 0 if method == "full" else budget
        values = [_mean(nll.get((task, method, key_budget), {})) for task in tasks]
        if all(not math.isnan(value) for value in values):
            means[method] = [*values, sum(values) / len(values)]
    baselines = [m for m in means if m not in ("full", OUR_METHOD)]
    if OUR_METHOD not in means or not baselines:
        return None

    columns = [*tasks, None]  # None is the average over tasks
    markers = {}
    for index, task in enumerate(columns):
        best = min(baselines, key=lambda method: means[method][index])
        chosen = tasks if task is None else [task]
        pairs = [paired_values(nll[(t, OUR_METHOD, budget)], nll[(t, best, budget)]) for t in chosen]
        interval = paired_task_average(pairs).interval
        markers[index] = ""
        if interval.high < 0:
            markers[index] = "$^{-}$"
        elif interval.low > 0:
            markers[index] = "$^{+}$"

    compressed = [m for m in means if m != "full"]
    rows = []
    for method, values in means.items():
        cells_text = []
        for index, value in enumerate(values):
            text = format_number(value, NLL_DIGITS)
            column = [means[m][index] for m in compressed]
            lowest = min(column)
            if method != "full" and max(column) > lowest and math.isclose(value, lowest, abs_tol=1e-12):
                text = Latex(rf"\textbf{{{text}}}")
            if method == OUR_METHOD:
                text = Latex(text + markers[index])
            cells_text.append(text)
        rows.append(NllRow(METHOD_LABELS.get(method, method), method, cells_text))
    return NllTable(budget, [task_label(task) for task in tasks] + ["Avg."], rows)
