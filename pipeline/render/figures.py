"""Draw the paper's figures from the results with matplotlib.

Figures are saved as PDF with TrueType fonts (``pdf.fonttype`` 42), because
Type 3 fonts are not accepted in ICML submissions, and without creation
dates or producer strings, so an unchanged input gives an unchanged file.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.render.results import METHOD_LABELS, score_pivot  # noqa: E402

logger = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # one INFO line per subset font otherwise

COLUMN_WIDTH_IN = 3.25
TEXT_WIDTH_IN = 6.75
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}

matplotlib.rcParams.update(
    {
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        # STIX ships with matplotlib as TrueType and matches the paper's Times.
        "font.family": "STIXGeneral",
        "mathtext.fontset": "stix",
        "font.size": 8,
        "axes.titlesize": 8,
        "legend.fontsize": 7,
        "svg.hashsalt": "circuitkv",
    }
)


def category_bars(frame: pd.DataFrame, table, path: Path) -> Path:
    """Figure 3: left, each method's score per Table 1 column at the main budget, the full cache as a grey bar;
    right, the average over tasks against the budget, the full cache as a dashed line."""
    pivot = score_pivot(frame)["avg"].dropna()
    compressed = pivot.drop(index="full", level="method", errors="ignore")
    budgets = sorted(compressed.index.get_level_values("budget").unique())
    methods = [m for m in METHOD_LABELS if m in compressed.index.get_level_values("method")]
    colours = {method: plt.get_cmap("tab10")(index) for index, method in enumerate(methods)}

    figure, (left, right) = plt.subplots(1, 2, figsize=(TEXT_WIDTH_IN, 2.0), width_ratios=[3, 2])
    columns = [column.label for column in table.columns]
    shown = table.rows
    width = 0.85 / max(len(shown), 1)
    for index, row in enumerate(shown):
        heights = row.values
        offsets = [position + (index - (len(shown) - 1) / 2) * width for position in range(len(columns))]
        colour = "0.75" if row.method == "full" else colours[row.method]
        left.bar(offsets, heights, width=width, color=colour, label=METHOD_LABELS.get(row.method, row.method))
        # A bar of height zero is invisible; a short line on the axis shows that the score is zero, not missing.
        zeros = [offset for offset, height in zip(offsets, heights) if height == 0]
        left.hlines([0.8] * len(zeros), [x - width / 2 for x in zeros], [x + width / 2 for x in zeros],
                    colors=[colour] * len(zeros), linewidth=1.5)
    left.set_xticks(range(len(columns)), columns)
    left.set_ylabel(f"Score at B = {table.budget}")
    left.set_ylim(0, 100)
    left.legend(ncol=3, frameon=False, loc="upper left", fontsize=6)

    for method in methods:
        values = [compressed.get((method, budget), float("nan")) for budget in budgets]
        right.plot(range(len(budgets)), values, marker="o", markersize=3, color=colours[method],
                   label=METHOD_LABELS[method])
    full = pivot.xs("full", level="method") if "full" in pivot.index.get_level_values("method") else None
    if full is not None and len(full):
        right.axhline(float(full.iloc[0]), color="black", linestyle="--", linewidth=0.8, label="Full cache")
    right.set_xticks(range(len(budgets)), [str(budget) for budget in budgets])
    right.set_xlabel("Budget B")
    right.set_ylabel("Average score")
    right.set_ylim(0, 100)
    for axes in (left, right):
        axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout(pad=0.3)
    return _save(figure, path)


def drawable_sweeps(grids: list[dict]) -> list[dict]:
    """Return the sweep grids the heatmap draws: prompt protocol, absolute budgets or the full cache."""
    return [grid for grid in grids if grid["protocol"] == "prompt" and grid["budget_ratio"] is None]


def sweep_heatmaps(grids: list[dict], path: Path) -> Path:
    """Draw the appendix figure: the needle sweep's score per prompt length (y) and needle depth (x).

    Each panel is one method (columns, full cache first) at one budget (rows)
    of the prompt protocol. The full cache does not depend on the budget, so
    its panel repeats in every row.
    """
    grids = drawable_sweeps(grids)
    if not grids:
        raise ValueError("No needle-sweep results of the prompt protocol to draw.")
    methods = [m for m in METHOD_LABELS if any(grid["method"] == m for grid in grids)]
    methods += sorted({grid["method"] for grid in grids} - set(methods))
    budgets = sorted({grid["budget"] for grid in grids if grid["budget"] is not None}) or [None]
    by_key = {(grid["method"], grid["budget"]): grid for grid in grids}

    figure, axes = plt.subplots(
        len(budgets), len(methods), figsize=(6.75, 0.5 + 1.0 * len(budgets)), squeeze=False,
        sharex=True, sharey=True, layout="constrained",
    )
    image = None
    for row, budget in enumerate(budgets):
        for column, method in enumerate(methods):
            panel = axes[row][column]
            grid = by_key.get((method, None if method == "full" else budget))
            if row == 0:
                panel.set_title(METHOD_LABELS.get(method, method), fontsize=6)
            if column == 0:
                panel.set_ylabel("Tokens" if budget is None else f"B = {budget}\nTokens", fontsize=6)
            if grid is None:
                panel.set_xticks([])
                panel.set_yticks([])
                continue
            values = [[float("nan") if value is None else value for value in line] for line in grid["scores"]]
            image = panel.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto", origin="lower")
            depth_labels = [str(depth) if index % 3 == 0 else "" for index, depth in enumerate(grid["depths"])]
            panel.set_xticks(range(len(grid["depths"])), depth_labels, fontsize=5)
            length_labels = [str(length) for length in grid["lengths"]]
            panel.set_yticks(range(len(grid["lengths"])), length_labels, fontsize=5)
    for panel in axes[-1]:
        panel.set_xlabel("Depth (%)", fontsize=6)
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.9, pad=0.01, label="Score").ax.tick_params(labelsize=5)
    return _save(figure, path)


def drawn(path: Path, inputs: str, draw, code: Path) -> Path:
    """Return ``path``, calling ``draw()`` only when its inputs or drawing code changed since it was drawn.

    ``inputs`` is a text rendering of everything the figure shows, and
    ``code`` the module that draws it. Their digest is kept next to the
    figure, so a change to a template or to another figure's data leaves
    this figure's file untouched.
    """
    digest = hashlib.sha256((inputs + "\0" + code.read_text(encoding="utf-8")).encode()).hexdigest()
    record = path.with_name(f".{path.name}.inputs")
    if path.is_file() and record.is_file() and record.read_text(encoding="utf-8").strip() == digest:
        logger.info("%s: inputs unchanged, not redrawn", path)
        return path
    draw()
    record.write_text(digest + "\n", encoding="utf-8")
    return path


def _save(figure, path: Path) -> Path:
    """Write ``figure`` as a PDF atomically, without metadata that changes between runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="pdf", metadata=PDF_METADATA)
    plt.close(figure)
    temporary.replace(path)
    logger.info("Wrote %s", path)
    return path
