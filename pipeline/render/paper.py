"""Render the paper: results JSON -> figures and ``paper/main.tex`` with its assets.

    python -m pipeline.render.paper [--results data/results] [--paper paper] [--figures figures]
                                    [--mode review|accepted|preprint] [--kit PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import jinja2
import yaml

from pipeline.atomic import write_text_atomically
from pipeline.experiments.schema import MERGED_DIR, MISSING_FILE, ResultsError, read_cell
from pipeline.render import claims, figures
from pipeline.render.ablation import ablation_table, canonical
from pipeline.render.analysis_figures import analysis_context
from pipeline.render.build import SOURCE_MAP
from pipeline.render.categories import category_macros, category_table
from pipeline.render.config import CONFIG_PATH, REMEDIES, ConfigError, load_config
from pipeline.render.content_files import display_path
from pipeline.render.efficiency import efficiency_macros
from pipeline.render.latex import MISSING, Latex, escape, format_number, join_words, make_environment
from pipeline.render.nll_table import nll_table
from pipeline.render.related import RelatedError, related_context
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
from pipeline.render.source_map import strip_markers
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
FIGURE_RESULTS = "results_by_category.pdf"
# Bibliography keys of the models the paper may name, by a part of their model id.
MODEL_CITATIONS = {"smollm2": "allal2025smollm2"}
RELATED_PATH = REPOSITORY / "paper" / "content" / "related_work.yaml"
FIGURE_SWEEP = "needle_sweep.pdf"


class PaperError(RuntimeError):
    """The paper cannot be rendered from the given inputs."""


def load_cells(results_dir: Path):
    """Read every merged cell file (``results_dir/merged``, written by ``make results``) as ``(display path, cell)``.

    The display path is relative (to the repository, else to the results
    directory's parent), so no absolute path or user name reaches the paper.
    """
    cell_dir = results_dir / MERGED_DIR
    paths = sorted(path for path in cell_dir.rglob("*.json") if not path.name.startswith(".")
                   and path.name != MISSING_FILE)
    if not paths:
        raise ResultsError(f"{cell_dir}: no merged result files found; run `make results` (or `python -m pipeline "
                           "aggregate` after a run with --no-aggregate) first.")
    base = REPOSITORY if results_dir.resolve().is_relative_to(REPOSITORY) else results_dir.resolve().parent
    return [(path.resolve().relative_to(base), read_cell(path)) for path in paths]


def read_holes(results_dir: Path) -> list[dict]:
    """Return the entries of ``merged/missing.json`` (a draft aggregate's holes), or [] without that file."""
    path = results_dir / MERGED_DIR / MISSING_FILE
    if not path.is_file():
        return []
    try:
        holes = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise PaperError(f"{path}: invalid JSON ({error}); run `python -m pipeline aggregate --draft` again.") from None
    if not isinstance(holes, list):
        raise PaperError(f"{path}: expected a list of missing cells; run `python -m pipeline aggregate --draft` again.")
    return holes


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
        "acknowledgements": str(data.get("acknowledgements") or "").strip(),
    }


def model_name(model_id: str) -> str:
    """Short model name for prose: the last path part, without notes in brackets."""
    return model_id.split(" (")[0].rstrip("/").split("/")[-1]


def _setup(cells) -> dict:
    """Facts of the run that the paper states, read from the results."""
    first = cells[0][1]
    params = {cell.config.method: cell.config.method_params for _, cell in cells if cell.config.method in METHOD_ORDER}
    all_params = {cell.config.method: cell.config.method_params for _, cell in cells}
    counts: dict[str, int] = {}
    for _, cell in cells:
        counts[cell.config.task] = max(counts.get(cell.config.task, 0), len(cell.samples))
    samples = sorted(counts.items())
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
        "model_cite": next((key for part, key in MODEL_CITATIONS.items() if part in first.model.model_id.lower()), None),
        "threads": first.provenance.torch_threads,
        "num_layers": first.model.num_layers,
        "num_kv_heads": first.model.num_kv_heads,
        "head_dim": first.model.head_dim,
        "dtype": first.model.dtype,
        "device": first.provenance.device_name,
        "device_type": first.model.device,
        "samples": [{"task": task_label(task), "key": task, "count": count} for task, count in samples],
        "compute_hours": compute_seconds(cells) / 3600,
        "param_rows": [
            {"method": escape(METHOD_LABELS.get(method, method)),
             "settings": Latex(", ".join(rf"\texttt{{{escape(name)}}}~=~{escape(str(value))}"
                                         for name, value in sorted(values.items())) or "none")}
            for method, values in sorted(all_params.items(), key=lambda item: _method_rank(item[0]))
        ],
        "software": sorted((first.provenance.packages or {}).items()) + [("python", first.provenance.python)],
        "context_tokens": context,
        "budgets": budgets,
        "params": params,
        "seed": first.config.seed,
        "pyramid_runs": len(pyramid),
        "pyramid_fallbacks": sum(1 for sample in pyramid if sample.budget_fallback),
    }


def setup_macros(setup: dict, budgets: list[int], main_budget: int) -> list[tuple[str, Latex, str]]:
    """Macros for the facts of the run that the text states: model shape, lengths, budgets, samples, hyperparameters."""
    source = Latex("cell files: model and config fields")
    macros = [
        ("setup/model", Latex(escape(setup["model_name"]).replace("-", r"-\allowbreak{}")),
         Latex("cell files: model.model_id")),
        ("setup/layers", Latex(str(setup["num_layers"])), source),
        ("setup/dtype", escape(setup["dtype"]), Latex("cell files: model.dtype")),
        ("setup/device", escape(setup["device"]), Latex("cell files: provenance.device_name")),
        ("setup/kvheads", Latex(str(setup["num_kv_heads"])), source),
        ("setup/headdim", Latex(str(setup["head_dim"])), source),
        ("setup/threads", Latex(str(setup["threads"])), Latex("cell files: provenance.torch_threads")),
        ("setup/budgets", Latex(join_words([str(budget) for budget in budgets])), Latex("cell files: config.budget")),
        ("budget/main", Latex(str(main_budget)), Latex("paper/content/paper.yaml: main_budget")),
        ("stat/confidence", Latex(str(round(CONFIDENCE * 100))), Latex("pipeline/stats/bootstrap.py: CONFIDENCE")),
        ("stat/resamples", Latex(f"{RESAMPLES:,}".replace(",", "{,}")), Latex("pipeline/stats/bootstrap.py: RESAMPLES")),
        ("setup/compute", format_number(setup["compute_hours"], 1),
         Latex("sum over cells of measured prefill (once per prompt), scoring and per-row decoding seconds")),
    ]
    if setup["context_tokens"]:
        macros.append(("setup/context", Latex(join_words([str(n) for n in setup["context_tokens"]])),
                       Latex("cell files: config.context_tokens")))
    if setup["pyramid_fallbacks"]:
        source = Latex("cell files: samples[].budget_fallback of the pyramidkv cells")
        macros.append(("setup/pyramid/fallbacks", Latex(str(setup["pyramid_fallbacks"])), source))
        macros.append(("setup/pyramid/runs", Latex(str(setup["pyramid_runs"])), source))
    for budget in budgets:
        macros.append((f"budget/b{budget}", Latex(str(budget)), Latex("cell files: config.budget")))
    for item in setup["samples"]:
        macros.append((f"setup/samples/{item['key']}", Latex(str(item["count"])), Latex("cell files: len(samples)")))
    for method, params in setup["params"].items():
        for name, value in params.items():
            if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
                continue
            text = str(value) if isinstance(value, int) else f"{value:g}"
            macros.append((f"param/{method}/{name}", Latex(text), Latex(f"cell files: config.method_params of {method}")))
    return macros


def _method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def compute_seconds(cells) -> float:
    """Measured seconds behind the results: each prompt's prefill once, plus every sample's scoring and decoding.

    A decoding batch shares its wall time among its rows, so each row counts
    ``decode_s / decode_batch``.
    """
    prefills: dict[tuple, float] = {}
    total = 0.0
    for _, cell in cells:
        for sample in cell.samples:
            timing = sample.timing
            prefills[(cell.config.task, cell.config.context_tokens, sample.sample_id)] = timing.prefill_s
            total += timing.scoring_s + timing.decode_s / max(timing.decode_batch, 1)
    return total + sum(prefills.values())


def render(results_dir: Path, paper_dir: Path, figure_dir: Path, mode: str = "review", kit: Path | None = None,
           config_path: Path = CONFIG_PATH, templates: Path = TEMPLATES, remedies: tuple[str, ...] = (),
           draft: bool = False) -> Path:
    """Draw the figures and write ``paper_dir/main.tex`` with the style, bibliography and figures.

    ``remedies`` are the page-limit remedies of ``paper.yaml``'s ``fit`` to apply (see ``pipeline.render.fit``).
    ``draft`` accepts results that ``python -m pipeline aggregate --draft`` merged with holes, and prints
    each missing table entry as a red mark.
    """
    if mode not in MODES:
        raise PaperError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    config = load_config(config_path)
    holes = read_holes(results_dir)
    if holes and not draft:
        raise PaperError(f"{results_dir / MERGED_DIR / MISSING_FILE}: the merged results have {len(holes)} missing "
                         "cells, so the tables would have holes. Run `make results` to complete them, or build a "
                         "draft with red marks: `make paper DRAFT=1`.")
    cells = load_cells(results_dir)
    frame = results_frame(cells)
    setup = _setup(cells)
    ours_budgets = sorted(set(frame.loc[(frame.method == OUR_METHOD) & (frame.budget > 0), "budget"]))
    main_budget = config.budget_for(setup["device_type"], [int(b) for b in ours_budgets], config_path)

    table = category_table(frame, cells, main_budget)
    code = Path(figures.__file__)
    figure_paths = [figures.drawn(figure_dir / FIGURE_RESULTS, frame.to_json() + repr(table),
                                  lambda: figures.category_bars(frame, table, figure_dir / FIGURE_RESULTS), code)]
    sweeps = figures.drawable_sweeps(sweep_grids(cells))
    if sweeps:
        figure_paths.append(figures.drawn(figure_dir / FIGURE_SWEEP, json.dumps(sweeps, sort_keys=True, default=str),
                                          lambda: figures.sweep_heatmaps(sweeps, figure_dir / FIGURE_SWEEP), code))
    ablation, ablation_macros = ablation_table(cells, config.ablation, main_budget)
    analysis, analysis_macros_list, analysis_paths = analysis_context(results_dir, figure_dir)
    figure_paths += analysis_paths
    efficiency, efficiency_macros_list = efficiency_macros(results_dir, setup["context_tokens"])
    related = related_context(RELATED_PATH, templates / "references.bib")

    labels, rows = main_table(frame)
    likelihood_table = nll_table(frame, cells, main_budget)
    variant_labels = {canonical(row.method): Latex(f"CircuitKV, {row.label}") for row in config.ablation.rows[1:]}
    for row in setup["param_rows"]:
        spec = next((spec for spec in variant_labels if escape(spec) == row["method"]), None)
        if spec is not None:
            row["method"] = variant_labels[spec]
    comparisons = claims.compare(frame, cells)
    likelihoods, likelihood_macros = claims.likelihoods(frame, cells)
    story = claims.story(comparisons, likelihoods, main_budget)
    budgets = sorted(int(budget) for budget in set(frame.budget) if budget)
    macros = (
        result_macros(frame) + claims.difference_macros(comparisons) + likelihood_macros
        + category_macros(frame, main_budget) + ablation_macros + analysis_macros_list + efficiency_macros_list
        + setup_macros(setup, budgets, main_budget)
    )
    keys = [key for key, _, _ in macros]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise PaperError(f"Result macros defined twice: {', '.join(duplicated)}.")
    if draft:
        macros.append(("draft/holes", Latex(str(len(holes))), Latex(f"{MERGED_DIR}/{MISSING_FILE}: entries")))
    context = {
        "draft": draft,
        "missing": MISSING,
        "mode": mode,
        "fit": {remedy: remedy in remedies for remedy in REMEDIES},
        "title": config.title_text,
        "style_package": KIT_STYLE if kit else OUR_STYLE,
        "style_options": "" if mode == "review" else mode,
        "bibliography_style": KIT_STYLE if kit else "plainnat",
        "people": read_authors(paper_dir / "authors.yaml") if mode != "review" else None,
        "table_columns": labels,
        "table_rows": rows,
        "main": table,
        "ablation": ablation,
        "nll_table": likelihood_table,
        "nll_average": {row.method: row.cells[-1] for row in likelihood_table.rows} if likelihood_table else {},
        "analysis": analysis,
        "efficiency": efficiency,
        "related": related,
        "macros": macros,
        "likelihoods": likelihoods,
        "comparisons": comparisons,
        "story": story,
        "headline": claims.headline(comparisons),
        "task_notes": claims.task_notes(frame, cells, main_budget),
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
        "setup": setup,
        "figure_results": Latex(f"figures/{FIGURE_RESULTS}"),
        "figure_sweep": Latex(f"figures/{FIGURE_SWEEP}") if sweeps else None,
    }

    environment = make_environment(templates, source_map=True)
    try:
        text, origins = strip_markers(environment.get_template("main.tex.j2").render(**context))
    except jinja2.TemplateSyntaxError as error:
        raise PaperError(f"{error.filename or error.name}:{error.lineno}: template syntax error: {error.message}") from None
    except jinja2.TemplateNotFound as error:
        raise PaperError(f"Template {error.name} not found under {templates}; restore it with git.") from None
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
    source_map = {"templates": display_path(templates.resolve()), "lines": origins}
    # An unchanged file keeps its time, so latexmk and the writing check see the build as current.
    for path, content in ((paper_dir / SOURCE_MAP, json.dumps(source_map) + "\n"), (target, text)):
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            write_text_atomically(path, content)
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
    parser.add_argument("--draft", action="store_true", default=os.environ.get("DRAFT") == "1",
                        help="accept merged results with holes and mark them in red (default: $DRAFT=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        render(args.results, args.paper, args.figures, args.mode, args.kit, draft=args.draft)
    except (PaperError, ResultsError, ConfigError, RelatedError, ValueError) as error:
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
