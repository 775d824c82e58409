"""Table 1: every method at the main budget, by task category, with the average over tasks.

A category's score is the unweighted mean of its tasks' scores, and the
average is the mean over all tasks, as in LongBench's own tables. When the
results hold a single category, its tasks become the columns instead, so that
the table never repeats one number twice.

On CircuitKV's row, a superscript marks each column where the paired
bootstrap interval of CircuitKV minus that column's strongest baseline lies
above zero (+) or below zero (-); averages over several tasks resample
prompts within each task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pipeline.render.latex import MISSING, Latex, format_number
from pipeline.render.results import METHOD_LABELS, METHOD_ORDER, OUR_METHOD, prompt_scores, score_pivot, task_order
from pipeline.render.tasks import CATEGORY_LABELS, task_category, task_label
from pipeline.stats.bootstrap import PairedDifference, paired_task_average
from pipeline.stats.summary import paired_values

AVERAGE = "avg"


@dataclass(frozen=True)
class Column:
    """One column of Table 1: its key (category, task or ``avg``), label and tasks."""

    key: str
    label: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class CategoryRow:
    label: str
    method: str
    cells: list[Latex]
    values: list[float]  # the cells' numbers, NaN where missing


@dataclass(frozen=True)
class CategoryTable:
    """Table 1 at one budget: columns, rows, and whether its columns are categories or tasks."""

    budget: int
    by_category: bool
    columns: list[Column]
    rows: list[CategoryRow]
    marked_above: list[str]  # labels of columns where CircuitKV's interval lies above zero
    marked_below: list[str]


def columns_of(frame: pd.DataFrame) -> tuple[bool, list[Column]]:
    """Return whether the columns are categories, and the columns, the average last."""
    tasks = task_order(frame)
    groups: dict[str, list[str]] = {}
    for task in tasks:
        groups.setdefault(task_category(task), []).append(task)
    if len(groups) > 1:
        columns = [Column(name, CATEGORY_LABELS.get(name, name), tuple(members)) for name, members in groups.items()]
    else:
        columns = [Column(task, task_label(task), (task,)) for task in tasks]
    return len(groups) > 1, [*columns, Column(AVERAGE, "Avg.", tuple(tasks))]


def column_scores(frame: pd.DataFrame, columns: list[Column], budget: int) -> pd.DataFrame:
    """Mean score per (method) row and column at ``budget``; the full cache is the row ``full``."""
    pivot = score_pivot(frame)
    rows = {}
    for (method, row_budget), values in pivot.iterrows():
        if row_budget not in (0, budget) or (method == "full") != (row_budget == 0):
            continue
        rows[method] = {
            column.key: values[list(column.tasks)].mean(skipna=False) for column in columns
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    order = [method for method in METHOD_ORDER if method in table.index]
    return table.loc[order]


def column_difference(scores: dict, column: Column, baseline: str, budget: int) -> PairedDifference | None:
    """CircuitKV minus ``baseline`` on the column's tasks, paired over prompts; None without shared prompts."""
    pairs = []
    for task in column.tasks:
        ours, theirs = scores.get((task, OUR_METHOD, budget)), scores.get((task, baseline, budget))
        if not ours or not theirs:
            return None
        pairs.append(paired_values(ours, theirs))
    if any(not first for first, _ in pairs):
        return None
    return paired_task_average(pairs)


def category_table(frame: pd.DataFrame, cells: list, budget: int) -> CategoryTable:
    """Build Table 1 at ``budget``: bold marks the best compressed method per column unless all tie."""
    by_category, columns = columns_of(frame)
    table = column_scores(frame, columns, budget)
    compressed = table.drop(index="full", errors="ignore")
    if compressed.empty:
        raise ValueError(f"Table 1: no compressed method ran at budget {budget}.")
    scores = prompt_scores(cells)

    above, below = [], []
    markers = {}
    for column in columns:
        baselines = compressed.drop(index=OUR_METHOD, errors="ignore")[column.key].dropna()
        if OUR_METHOD not in compressed.index or baselines.empty:
            continue
        difference = column_difference(scores, column, baselines.idxmax(), budget)
        if difference is None:
            continue
        if difference.interval.low > 0:
            markers[column.key] = "$^{+}$"
            above.append(column.label)
        elif difference.interval.high < 0:
            markers[column.key] = "$^{-}$"
            below.append(column.label)

    rows = []
    for method, values in table.iterrows():
        cells_text = []
        for column in columns:
            value = values[column.key]
            if pd.isna(value):
                cells_text.append(MISSING)
                continue
            text = format_number(value)
            column_values = compressed[column.key].dropna()
            tied = column_values.min() == column_values.max()
            if method != "full" and not tied and math.isclose(value, column_values.max(), abs_tol=1e-9):
                text = Latex(rf"\textbf{{{text}}}")
            if method == OUR_METHOD and column.key in markers:
                text = Latex(text + markers[column.key])
            cells_text.append(text)
        values_list = [float(values[column.key]) for column in columns]
        rows.append(CategoryRow(METHOD_LABELS.get(method, method), method, cells_text, values_list))
    return CategoryTable(budget, by_category, columns, rows, above, below)


def category_macros(frame: pd.DataFrame, budget: int) -> list[tuple[str, Latex, str]]:
    """Macros ``cat/CATEGORY/METHOD`` for each category column's mean score at ``budget`` (the full cache at all)."""
    by_category, columns = columns_of(frame)
    if not by_category:
        return []
    table = column_scores(frame, columns, budget)
    macros = []
    for column in columns[:-1]:
        slug = column.key.replace(" ", "-")
        for method, value in table[column.key].items():
            if pd.isna(value):
                continue
            source = Latex(f"mean over the {column.key} tasks of mean_score, {method} cells at budget "
                           f"{'full' if method == 'full' else budget}")
            macros.append((f"cat/{slug}/{method}", format_number(value), source))
    return macros
