"""Render the paper: results JSON -> figures and ``paper/main.tex`` with its assets.

    python -m pipeline.render.paper [--results data/results] [--paper paper] [--figures figures]
                                    [--mode review|accepted|preprint] [--kit PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import jinja2
import yaml

from pipeline.atomic import write_text_atomically
from pipeline.experiments.schema import ResultsError, read_cell
from pipeline.render import claims, figures
from pipeline.render.latex import Latex, make_environment
from pipeline.render.results import (
    METHOD_LABELS,
    METHOD_ORDER,
    OUR_METHOD,
    main_table,
    result_macros,
    results_frame,
    seed_spreads,
    task_order,
)
from pipeline.render.tasks import RULER_DESCRIPTIONS, base_name, task_label
from pipeline.stats.bootstrap import CONFIDENCE, RESAMPLES
from pipeline.stats.breakdowns import sweep_grids

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[2]
TEMPLATES = REPOSITORY / "templates"
OUR_STYLE = "icml2026compat"
KIT_STYLE = "icml2026"
MODES = ("review", "accepted", "preprint")
ASSETS = ("references.bib",)
FIGURE_RESULTS = "average_by_budget.pdf"
FIGURE_SWEEP = "needle_sweep.pdf"


class PaperError(RuntimeError):
    """The paper cannot be rendered from the given inputs."""


def load_cells(results_dir: Path):
    """Read every cell file under ``results_dir/cells`` as ``(display path, cell)`` pairs.

    The display path is relative (to the repository, else to the results
    directory's parent), so no absolute path or user name reaches the paper.
    """
    cell_dir = results_dir / "cells"
    paths = sorted(path for path in cell_dir.rglob("*.json") if not path.name.startswith("."))
    if not paths:
        raise ResultsError(f"{cell_dir}: no result files found; run `make results` first.")
    base = REPOSITORY if results_dir.resolve().is_relative_to(REPOSITORY) else results_dir.resolve().parent
    return [(path.resolve().relative_to(base), read_cell(path)) for path in paths]


def read_authors(path: Path) -> dict:
    """Authors for the camera-ready and preprint modes; review mode never calls this."""
    if not path.is_file():
        raise PaperError(
            f"{path} not found: the accepted and preprint modes need the authors. "
            "Copy paper/authors.example.yaml to paper/authors.yaml and fill it in."
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    authors = data.get("authors")
    if not isinstance(authors, list) or not authors:
        raise PaperError(f"{path}: field 'authors' must be a non-empty list.")

    def first(value):
        return value[0] if isinstance(value, list) else value

    affiliations: list[str] = []
    entries = []
    for index, author in enumerate(authors, start=1):
        if not isinstance(author, dict) or not author.get("name"):
            raise PaperError(f"{path}: authors entry {index} has no 'name'.")
        affiliation = first(author.get("affiliation")) or "Independent researcher"
        if affiliation not in affiliations:
            affiliations.append(affiliation)
        entries.append(
            {"name": author["name"], "key": f"aff{affiliations.index(affiliation) + 1}", "email": first(author.get("email"))}
        )
    corresponding = next((entry for entry in entries if entry["email"]), None)
    return {
        "authors": entries,
        "affiliations": [{"key": f"aff{i + 1}", "text": text} for i, text in enumerate(affiliations)],
        "corresponding": corresponding,
    }


def model_name(model_id: str) -> str:
    """Short model name for prose: the last path part, without notes in brackets."""
    return model_id.split(" (")[0].rstrip("/").split("/")[-1]


def _setup(cells) -> dict:
    """Facts of the run that the paper states, read from the results."""
    first = cells[0][1]
    params = {cell.config.method: cell.config.method_params for _, cell in cells}
    samples = sorted({(cell.config.task, len(cell.samples)) for _, cell in cells})
    context = sorted({cell.config.context_tokens for _, cell in cells if cell.config.context_tokens})
    budgets = sorted({cell.config.budget for _, cell in cells if cell.config.budget})
    pyramid = [
        sample for _, cell in cells
        if cell.config.method == "pyramidkv" and cell.config.protocol == "prompt" and cell.config.budget
        for sample in cell.samples if sample.compressed
    ]
    return {
        "model_id": first.model.model_id,
        "model_name": model_name(first.model.model_id),
        "threads": first.provenance.torch_threads,
        "num_layers": first.model.num_layers,
        "num_kv_heads": first.model.num_kv_heads,
        "head_dim": first.model.head_dim,
        "dtype": first.model.dtype,
        "device": first.provenance.device_name,
        "device_type": first.model.device,
        "samples": [{"task": task_label(task), "count": count} for task, count in samples],
        "context_tokens": context,
        "budgets": budgets,
        "params": params,
        "seed": first.config.seed,
        "pyramid_runs": len(pyramid),
        "pyramid_fallbacks": sum(1 for sample in pyramid if sample.budget_fallback),
    }


def render(results_dir: Path, paper_dir: Path, figure_dir: Path, mode: str = "review", kit: Path | None = None) -> Path:
    """Draw the figures and write ``paper_dir/main.tex`` with the style, bibliography and figures."""
    if mode not in MODES:
        raise PaperError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    cells = load_cells(results_dir)
    frame = results_frame(cells)

    figure_paths = [figures.average_by_budget(frame, figure_dir / FIGURE_RESULTS)]
    sweeps = figures.drawable_sweeps(sweep_grids(cells))
    if sweeps:
        figure_paths.append(figures.sweep_heatmaps(sweeps, figure_dir / FIGURE_SWEEP))
    labels, rows = main_table(frame)
    comparisons = claims.compare(frame, cells)
    likelihoods, likelihood_macros = claims.likelihoods(frame, cells)
    context = {
        "mode": mode,
        "style_package": KIT_STYLE if kit else OUR_STYLE,
        "style_options": "" if mode == "review" else mode,
        "bibliography_style": KIT_STYLE if kit else "plainnat",
        "people": read_authors(paper_dir / "authors.yaml") if mode != "review" else None,
        "table_columns": labels,
        "table_rows": rows,
        "macros": result_macros(frame) + claims.difference_macros(comparisons) + likelihood_macros,
        "likelihoods": likelihoods,
        "comparisons": comparisons,
        "headline": claims.headline(comparisons),
        "weak_tasks": claims.weak_tasks(frame),
        "seed_spreads": seed_spreads(frame),
        "tasks": [task_label(task) for task in task_order(frame)],
        "ruler_tasks": [
            {"label": task_label(task), "description": RULER_DESCRIPTIONS[task]}
            for task in dict.fromkeys(base_name(key) for key in task_order(frame)) if task in RULER_DESCRIPTIONS
        ],
        "longbench_tasks": [
            task_label(task) for task in dict.fromkeys(task_order(frame))
            if set(frame.loc[frame.task == task, "benchmark"]) == {"longbench"}
        ],
        "bootstrap": {"confidence": round(CONFIDENCE * 100), "resamples": RESAMPLES},
        "baselines": [
            METHOD_LABELS[method] for method in METHOD_ORDER
            if method in set(frame.method) and method not in ("full", OUR_METHOD)
        ],
        "setup": _setup(cells),
        "figure_results": Latex(f"figures/{FIGURE_RESULTS}"),
        "figure_sweep": Latex(f"figures/{FIGURE_SWEEP}") if sweeps else None,
    }

    environment = make_environment(TEMPLATES)
    try:
        text = environment.get_template("main.tex.j2").render(**context)
    except jinja2.TemplateSyntaxError as error:
        raise PaperError(f"{error.filename or error.name}:{error.lineno}: template syntax error: {error.message}") from None
    except jinja2.UndefinedError as error:
        raise PaperError(f"Template refers to an undefined value: {error.message}") from None

    paper_dir.mkdir(parents=True, exist_ok=True)
    (paper_dir / "figures").mkdir(exist_ok=True)
    for figure_path in figure_paths:
        shutil.copyfile(figure_path, paper_dir / "figures" / figure_path.name)
    for asset in ASSETS:
        shutil.copyfile(TEMPLATES / asset, paper_dir / asset)
    if kit:
        for name in (f"{KIT_STYLE}.sty", f"{KIT_STYLE}.bst"):
            if not (kit / name).is_file():
                raise PaperError(f"ICML_KIT={kit}: {name} not found there; point ICML_KIT at the unpacked official kit.")
            shutil.copyfile(kit / name, paper_dir / name)
    else:
        shutil.copyfile(TEMPLATES / f"{OUR_STYLE}.sty", paper_dir / f"{OUR_STYLE}.sty")

    target = paper_dir / "main.tex"
    write_text_atomically(target, text)
    logger.info("Wrote %s", target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.render.paper", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPOSITORY / "data/results", help="results directory")
    parser.add_argument("--paper", type=Path, default=REPOSITORY / "paper", help="output directory of main.tex")
    parser.add_argument("--figures", type=Path, default=REPOSITORY / "figures", help="output directory of figures")
    parser.add_argument("--mode", default=os.environ.get("MODE", "review"), choices=MODES)
    parser.add_argument("--kit", type=Path, default=os.environ.get("ICML_KIT") or None,
                        help="directory of the official ICML 2026 kit (default: $ICML_KIT, else our own style)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        render(args.results, args.paper, args.figures, args.mode, args.kit)
    except (PaperError, ResultsError, ValueError) as error:
        logger.error("%s", error)
        # A PDF from older inputs must not pass for the current one.
        stale = args.paper / "build" / "main.pdf"
        if stale.exists():
            stale.unlink()
            logger.error("Removed the stale %s; fix the error above and run `make paper` again.", stale)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
