"""Turn validated result cells into the paper's tables and result macros.

Every number the paper prints is defined here as a ``\\resultdef`` entry
whose comment names the JSON file and field it comes from.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.benchmarks.ruler import SWEEP_TASK
from pipeline.experiments.schema import CellResult
from pipeline.render.latex import MISSING, Latex, format_number
from pipeline.render.tasks import task_key, task_label
from pipeline.stats.summary import per_prompt_scores

logger = logging.getLogger(__name__)

METHOD_ORDER = ("full", "streamingllm", "h2o", "snapkv", "pyramidkv", "circuitkv")
METHOD_LABELS = {
    "full": "Full cache",
    "streamingllm": "StreamingLLM",
    "h2o": "H2O",
    "snapkv": "SnapKV",
    "pyramidkv": "PyramidKV",
    "circuitkv": "CircuitKV (Ours)",
}
OUR_METHOD = "circuitkv"


def results_frame(
    cells: list[tuple[Path, CellResult]], protocol: str = "prompt", methods: tuple[str, ...] | None = METHOD_ORDER
) -> pd.DataFrame:
    """One row per cell: task, benchmark, method, budget (0 for the full cache), mean score, samples, file.

    ``task`` is the table key: the task's name, or ``TASK-ctxN`` for a task
    whose cells cover several prompt lengths, so that lengths never mix.

    Only cells of ``protocol`` with absolute budgets are kept; budget-ratio cells
    do not share one budget across prompts and have no column in these tables.
    The needle sweep has its own figure and no column. Only ``methods`` are
    kept (all when None): the main tables show the named methods, and the
    ablation table its variants.
    Cells that differ only in their method seed become one row whose score is
    the mean over seeds, with ``num_seeds``, ``score_std`` (sample standard
    deviation over seeds, 0 for one seed) and their files joined by "; ".
    """
    rows = []
    selected = table_cells(cells, protocol)
    left_out = len(cells) - len(selected)
    for key, path, cell in selected:
        if methods is not None and cell.config.method not in methods:
            continue
        rows.append(
            {
                "task": key[0],
                "benchmark": cell.config.benchmark,
                "method": cell.config.method,
                "budget": cell.config.budget or 0,
                "method_seed": cell.config.seed if cell.config.method_seed is None else cell.config.method_seed,
                "score": cell.mean_score,
                "num_samples": len(cell.samples),
                "file": str(path),
            }
        )
    if left_out:
        logger.info("Tables use the %s protocol with absolute budgets; %d other cells left out", protocol, left_out)
    if not rows:
        wanted = "" if methods is None else f" for {', '.join(methods)}"
        raise ValueError(f"No result cells of the {protocol} protocol with absolute budgets{wanted}; run `make results`.")
    frame = pd.DataFrame(rows)
    duplicated = frame.duplicated(["task", "method", "budget", "method_seed"], keep=False)
    if duplicated.any():
        files = ", ".join(frame.loc[duplicated, "file"])
        raise ValueError(f"Several result files describe the same cell: {files}. Keep one of them.")

    keys = ["task", "benchmark", "method", "budget"]
    grouped = frame.sort_values("method_seed").groupby(keys, sort=False)
    merged = grouped.agg(
        score=("score", "mean"),
        score_std=("score", lambda scores: float(scores.std(ddof=1)) if len(scores) > 1 else 0.0),
        num_seeds=("score", "size"),
        num_samples=("num_samples", "first"),
        file=("file", "; ".join),
    )
    return merged.reset_index()


def table_cells(cells: list[tuple[Path, CellResult]], protocol: str = "prompt") -> list[tuple[tuple, Path, CellResult]]:
    """Return the cells the tables use, each with its key (table task key, method, budget with 0 for the full cache)."""
    lengths: dict[str, set] = {}
    for _, cell in cells:
        lengths.setdefault(cell.config.task, set()).add(cell.config.context_tokens)
    kept = []
    for path, cell in cells:
        config = cell.config
        if config.protocol != protocol or config.budget_ratio is not None or config.task == SWEEP_TASK:
            continue
        key = (task_key(config.task, config.context_tokens, len(lengths[config.task]) > 1), config.method,
               config.budget or 0)
        kept.append((key, path, cell))
    return kept


def prompt_scores(
    cells: list[tuple[Path, CellResult]], protocol: str = "prompt", field: str = "score"
) -> dict[tuple, dict[str, float]]:
    """Return, per table key, each prompt's ``field`` (score or answer_nll), averaged over method seeds."""
    grouped: dict[tuple, list[CellResult]] = {}
    for key, _, cell in table_cells(cells, protocol):
        grouped.setdefault(key, []).append(cell)
    return {key: per_prompt_scores(members, field) for key, members in grouped.items()}


def task_order(frame: pd.DataFrame) -> list[str]:
    """Tasks in a stable order: RULER first, then LongBench, each alphabetical."""
    tasks = frame[["benchmark", "task"]].drop_duplicates().sort_values(["benchmark", "task"], ascending=[False, True])
    return list(tasks["task"])


def score_pivot(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean scores with rows (method, budget) in paper order and columns tasks + ``avg``.

    ``avg`` is the unweighted mean over tasks; it is NaN when a task is missing for that row.
    """
    tasks = task_order(frame)
    pivot = frame.pivot_table(index=["method", "budget"], columns="task", values="score", aggfunc="first")
    pivot = pivot.reindex(columns=tasks)
    pivot["avg"] = pivot[tasks].mean(axis=1, skipna=False)

    def order(key: tuple[str, int]) -> tuple[int, int, int]:
        method, budget = key
        rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
        return (0 if method == "full" else 1, budget, rank)

    return pivot.loc[sorted(pivot.index, key=order)]


@dataclass(frozen=True)
class TableRow:
    label: str
    budget: str
    cells: list[Latex]
    starts_group: bool


def main_table(frame: pd.DataFrame) -> tuple[list[str], list[TableRow]]:
    """Table 1: column labels and rows; the best compressed score per budget and column is bold, unless all tie."""
    pivot = score_pivot(frame)
    columns = list(pivot.columns)
    compressed = pivot.drop(index="full", level="method", errors="ignore")
    best = compressed.groupby(level="budget").max()
    # Where every compressed method scores the same, nothing is bold.
    all_tied = compressed.groupby(level="budget").min() == best

    rows = []
    previous_budget = None
    for (method, budget), values in pivot.iterrows():
        cells = []
        for column in columns:
            value = values[column]
            if pd.isna(value):
                cells.append(MISSING)
                continue
            text = format_number(value)
            is_best = method != "full" and math.isclose(value, best.loc[budget, column], abs_tol=1e-9)
            if is_best and not all_tied.loc[budget, column]:
                text = Latex(rf"\textbf{{{text}}}")
            cells.append(text)
        rows.append(
            TableRow(
                label=METHOD_LABELS.get(method, method),
                budget="all" if method == "full" else str(budget),
                cells=cells,
                starts_group=previous_budget is not None and budget != previous_budget,
            )
        )
        previous_budget = budget
    labels = [task_label(task) for task in columns[:-1]] + ["Avg."]
    return labels, rows


def macro_key(task: str, method: str, budget: int) -> str:
    """Key of one result macro: ``task/method/b128`` or ``task/full/all``."""
    return f"{task}/{method}/" + ("all" if method == "full" else f"b{budget}")


def result_macros(frame: pd.DataFrame) -> list[tuple[str, Latex, str]]:
    """``(key, formatted value, source)`` for every cell and every per-row average.

    The source goes into a LaTeX comment, so it is not escaped.
    """
    macros = []
    for record in frame.sort_values(["task", "method", "budget"]).itertuples():
        if record.num_seeds > 1:
            source = Latex(f"mean over {record.num_seeds} method seeds of mean_score in {record.file}")
        else:
            source = Latex(f"{record.file}: mean_score")
        macros.append((macro_key(record.task, record.method, record.budget), format_number(record.score), source))
    pivot = score_pivot(frame)
    for (method, budget), value in pivot["avg"].items():
        if pd.isna(value):
            continue
        files = frame[(frame.method == method) & (frame.budget == budget)]["file"]
        source = Latex("mean over tasks of mean_score in " + ", ".join(sorted(files)))
        macros.append((macro_key("avg", method, budget), format_number(value), source))
    for spread in seed_spreads(frame):
        source = Latex(f"largest standard deviation over method seeds of mean_score, {spread['method']} cells")
        macros.append((spread["key"], format_number(spread["max_std"]), source))
        macros.append((f"seeds/{spread['method']}", Latex(str(spread["num_seeds"])),
                       Latex(f"number of method seeds of the {spread['method']} cells")))
    return macros


def seed_spreads(frame: pd.DataFrame) -> list[dict]:
    """Return, per method run with several seeds, the seed count and the largest per-cell standard deviation."""
    spreads = []
    for method in [m for m in METHOD_ORDER if m in set(frame.method)] + sorted(set(frame.method) - set(METHOD_ORDER)):
        rows = frame[(frame.method == method) & (frame.num_seeds > 1)]
        if rows.empty:
            continue
        spreads.append({
            "method": method, "label": METHOD_LABELS.get(method, method), "num_seeds": int(rows.num_seeds.min()),
            "max_std": float(rows.score_std.max()), "key": f"seedstd/{method}/max",
        })
    return spreads
