"""Table 2: CircuitKV's variants at the main budget, and the wording of what each change does.

Each row of ``paper.yaml``'s ablation names a method specification; its
cells give a mean score per task and the answer NLL (mean negative
log-likelihood per token of the reference after the compressed cache, lower
is better). Every variant is compared with the first row, the full method, by
a paired bootstrap over the prompts both ran, within each task.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pandas as pd

from pipeline.methods import REGISTRY
from pipeline.methods.spec import format_spec, parse_spec
from pipeline.render.config import CONFIG_PATH, Ablation
from pipeline.render.latex import MISSING, Latex, format_number, signed_number
from pipeline.render.results import prompt_scores, results_frame, task_order
from pipeline.render.tasks import task_label
from pipeline.stats.bootstrap import RESAMPLES, SEED, PairedDifference, paired_task_average
from pipeline.stats.summary import paired_values

logger = logging.getLogger(__name__)

NLL_DIGITS = 2


@dataclass(frozen=True)
class AblationRow:
    """One variant: its label, table cells, and its change against the full method.

    ``nll_effect`` is "lowers", "raises" or "leaves unchanged within noise"
    (the paired interval of variant minus full method, on the answer NLL), and
    ``score_effect`` the same for the score. The first row has neither.
    """

    label: Latex
    phrase: Latex
    method: str
    cells: list[Latex]
    key: str  # macros KEY/score and KEY/nll; KEY/nlldiff/{mean,low,high} for variants
    nll_effect: str | None
    score_effect: str | None


@dataclass(frozen=True)
class AblationTable:
    budget: int
    tasks: list[str]  # display labels
    rows: list[AblationRow]


def canonical(spec: str) -> str:
    """Return the spec as the runner names its cells: name, then overrides sorted by key."""
    return format_spec(*parse_spec(spec, REGISTRY))


def _effect(difference: PairedDifference, lower: str, higher: str) -> str:
    if difference.interval.high < 0:
        return lower
    if difference.interval.low > 0:
        return higher
    return "leaves unchanged within noise"


def _difference(values: dict, tasks: list[str], first: str, second: str, budget: int) -> PairedDifference | None:
    pairs = [paired_values(values.get((task, first, budget), {}), values.get((task, second, budget), {}))
             for task in tasks]
    if not all(ours for ours, _ in pairs):
        return None
    return paired_task_average(pairs)


# ``{temperature}`` on its own; a macro's argument such as \mathrm{softmax} or x^{T} is left alone.
PARAM_FIELD = re.compile(r"(?<![\w}^_\\])\{([A-Za-z_]\w*)\}")


def _fill_params(row, spec: str, params: dict, key: str) -> tuple[Latex, Latex, list[tuple[str, Latex, str]]]:
    """Replace ``{name}`` in a row's label and phrase by a macro holding the cells' value of that parameter."""
    macros: dict[str, tuple[str, Latex, str]] = {}

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in params:
            raise ValueError(f"{CONFIG_PATH}: ablation row {spec}: {{{name}}} is not a parameter of its cells "
                             f"({', '.join(sorted(params))}).")
        number = params[name]
        text = str(number) if isinstance(number, (bool, str)) or number is None else f"{number:g}"
        source = Latex(f"cell files: config.method_params.{name} of {spec}")
        macros[name] = (f"{key}/param/{name}", Latex(text), source)
        return f"\\result{{{key}/param/{name}}}"

    label = PARAM_FIELD.sub(value, row.label)
    phrase = PARAM_FIELD.sub(value, row.phrase)
    return Latex(label), Latex(phrase), list(macros.values())


def ablation_table(
    cells: list, ablation: Ablation, budget: int
) -> tuple[AblationTable | None, list[tuple[str, Latex, str]]]:
    """Build Table 2 and its macros; None when a configured row has no cells at ``budget``."""
    specs = [canonical(row.method) for row in ablation.rows]
    frame = results_frame(cells, methods=tuple(specs))
    frame = frame[frame.budget == budget]
    missing = [row.method for row, spec in zip(ablation.rows, specs) if spec not in set(frame.method)]
    if missing:
        logger.warning("%s: ablation rows %s have no cells at the main budget %d, so the paper has no ablation "
                       "table; run them at that budget (the profile's ablation section) or change main_budget.",
                       CONFIG_PATH, ", ".join(missing), budget)
        return None, []

    ran = [set(frame.loc[frame.method == spec, "task"]) for spec in specs]
    common = set.intersection(*ran)
    if ablation.tasks != "all":
        absent = [task for task in ablation.tasks if task not in common]
        if absent:
            raise ValueError(f"{CONFIG_PATH}: ablation.tasks {', '.join(absent)} did not run for every row at "
                             f"budget {budget}; rows ran on {', '.join(sorted(common)) or 'no common task'}.")
        common = set(ablation.tasks)
    tasks = [task for task in task_order(frame) if task in common]
    if not tasks:
        return None, []

    scores = prompt_scores(cells)
    nll = prompt_scores(cells, field="answer_nll")
    macros = []
    rows = []
    for index, (row, spec) in enumerate(zip(ablation.rows, specs)):
        key = f"abl/{index}"
        by_task = frame[frame.method == spec].set_index("task")["score"]
        mean_score = float(by_task[tasks].mean())
        nll_values = [value for task in tasks for value in nll.get((task, spec, budget), {}).values()]
        task_nll = [pd.Series(list(nll.get((task, spec, budget), {}).values())).mean() for task in tasks]
        has_nll = all(nll.get((task, spec, budget)) for task in tasks)
        mean_nll = float(pd.Series(task_nll).mean()) if has_nll else None

        source = Latex(f"mean over tasks {', '.join(tasks)} of mean_score, {spec} cells at budget {budget}")
        macros.append((f"{key}/score", format_number(mean_score), source))
        cells_text = [format_number(by_task[task]) for task in tasks] + [format_number(mean_score)]
        if mean_nll is not None:
            source = Latex(f"mean over tasks of the mean answer_nll per prompt, {spec} cells at budget {budget}")
            macros.append((f"{key}/nll", format_number(mean_nll, NLL_DIGITS), source))
            cells_text.append(format_number(mean_nll, NLL_DIGITS))
        else:
            cells_text.append(MISSING)

        nll_effect = score_effect = None
        if index > 0:
            score_difference = _difference(scores, tasks, spec, specs[0], budget)
            if score_difference is not None:
                score_effect = _effect(score_difference, "lowers", "raises")
            nll_difference = _difference(nll, tasks, spec, specs[0], budget) if nll_values else None
            if nll_difference is not None:
                nll_effect = _effect(nll_difference, "lowers", "raises")
                source = Latex(f"paired bootstrap ({RESAMPLES} resamples, seed {SEED}) of answer_nll, {spec} minus "
                               f"{specs[0]} at budget {budget}, stratified over tasks")
                for name in ("mean", "low", "high"):
                    text = signed_number(getattr(nll_difference.interval, name), NLL_DIGITS)
                    macros.append((f"{key}/nlldiff/{name}", text, source))
                marker = {"lowers": "$^{-}$", "raises": "$^{+}$"}.get(nll_effect, "")
                cells_text[-1] = Latex(cells_text[-1] + marker)
        params = next((cell.config.method_params for _, cell in cells if cell.config.method == spec), {})
        label, phrase, param_macros = _fill_params(row, spec, params, key)
        macros += param_macros
        rows.append(AblationRow(label, phrase, spec, cells_text, key, nll_effect, score_effect))
    return AblationTable(budget, [task_label(task) for task in tasks], rows), macros
