"""Draw the bridges and sensitivity figures and collect the numbers their captions quote.

The inputs are the two files that ``python -m pipeline.analysis.sensitivity``
writes under ``data/results/diagnostics/``. Both figures are saved like the
other figures of the paper (``figures._save``): PDF with TrueType fonts and
without metadata.
"""

from __future__ import annotations

import json
import math
from numbers import Real
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pipeline.analysis.sensitivity import BRIDGES_FILE, DEFAULT_OUTPUT_DIR, SENSITIVITY_FILE
from pipeline.render import figures  # noqa: F401  (sets the paper's matplotlib rcParams)
from pipeline.render.figures import _save, drawn
from pipeline.render.latex import Latex, format_number
from pipeline.render.tasks import task_label

REPOSITORY = Path(__file__).resolve().parents[2]
TEXT_WIDTH_IN = 6.75
BRIDGES_FIGURE = "bridges.pdf"
SENSITIVITY_FIGURE = "sensitivity.pdf"

# Swept parameter -> (short name in macro keys, axis label).
PARAMETERS = {
    "temperature": ("T", r"Temperature $T$"),
    "num_walkers": ("N", r"Walkers $N$"),
    "max_steps": ("S", r"Step limit $S$"),
}

# Rows of the sensitivity figure: record field, axis label and the factor from the stored share to the axis.
MEASURES = (
    ("answer_kept", "Answer tokens\nkept (%)", 100.0),
    ("jaccard", "Jaccard index\nwith exact default", 1.0),
)

KEPT_BOTH_COLOR = "#1f77b4"
BRIDGE_COLOR = "#ff7f0e"
ANSWER_COLOR = "#d62728"
CURVE_COLOR = "0.45"


# Reading and validating the records.


def _field(record: dict, dotted: str, path: str):
    """Return ``record[a][b]...`` for ``dotted`` = ``a.b...``, or raise ValueError naming the file and field."""
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{path}: field {dotted} is missing.")
        value = value[part]
    return value


def _number(record: dict, dotted: str, path: str, low: float | None = None, high: float | None = None) -> float:
    value = _field(record, dotted, path)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{path}: field {dotted} must be a finite number, got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{path}: field {dotted} = {value} is outside [{low}, {high}].")
    return float(value)


def _integer(record: dict, dotted: str, path: str, low: int = 0) -> int:
    value = _field(record, dotted, path)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{path}: field {dotted} must be an integer of at least {low}, got {value!r}.")
    return value


def _numbers(record: dict, dotted: str, path: str, length: int | None = None) -> list:
    values = _field(record, dotted, path)
    if not isinstance(values, list) or not all(
        isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) for value in values
    ):
        raise ValueError(f"{path}: field {dotted} must be a list of finite numbers.")
    if length is not None and len(values) != length:
        raise ValueError(f"{path}: field {dotted} has {len(values)} entries, expected {length}.")
    return values


def _position_lists(record: dict, dotted: str, path: str, num_tokens: int) -> list[list[int]]:
    """Per KV head, a list of positions in [0, num_tokens)."""
    heads = _field(record, dotted, path)
    if not isinstance(heads, list) or not heads or not all(isinstance(head, list) for head in heads):
        raise ValueError(f"{path}: field {dotted} must be a non-empty list with one list per KV head.")
    for head in heads:
        if not all(isinstance(position, int) and 0 <= position < num_tokens for position in head):
            raise ValueError(f"{path}: field {dotted} must hold positions from 0 to {num_tokens - 1}.")
    return heads


def validate_bridges(record: dict, path: str) -> None:
    """Raise ValueError naming the file and the first missing or invalid field of a bridges record."""
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level.")
    _field(record, "config.task", path)
    _integer(record, "layer", path)
    _integer(record, "budget", path, low=1)
    _integer(record, "num_kv_heads", path, low=1)
    num_tokens = _integer(record, "num_tokens", path, low=1)
    _integer(record, "forced.sinks", path)
    _integer(record, "forced.window", path)
    _numbers(record, "direct_attention", path, num_tokens)
    _numbers(record, "circuitkv_score", path, num_tokens)
    _position_lists(record, "kept.circuitkv", path, num_tokens)
    _position_lists(record, "kept.attention", path, num_tokens)
    bridges = _field(record, "bridges", path)
    if not isinstance(bridges, list) or not all(
        isinstance(head, list) and all(isinstance(item, dict) and isinstance(item.get("position"), int)
                                       for item in head)
        for head in bridges
    ):
        raise ValueError(f"{path}: field bridges must hold, per KV head, a list of objects with a position.")
    _position_lists({"answers": [_field(record, "answer_positions", path)]}, "answers", path, num_tokens)
    _number(record, "summary.bridges.mean", path, low=0)
    _integer(record, "summary.answer_tokens", path, low=1)
    _number(record, "summary.answer_kept.circuitkv", path, 0, 1)
    _number(record, "summary.answer_kept.attention", path, 0, 1)


def validate_sensitivity(record: dict, path: str) -> None:
    """Raise ValueError naming the file and the first missing or invalid field of a sensitivity record."""
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level.")
    _field(record, "config.task", path)
    sample_ids = _field(record, "config.sample_ids", path)
    if not isinstance(sample_ids, list) or not sample_ids:
        raise ValueError(f"{path}: field config.sample_ids must be a non-empty list.")
    _integer(record, "config.budget", path, low=1)
    _integer(record, "config.context_tokens", path, low=1)
    if not _numbers(record, "layers", path):
        raise ValueError(f"{path}: field layers must not be empty.")
    _number(record, "seconds", path, low=0)
    for name in ("reference", "attention"):
        _number(record, f"{name}.answer_kept", path, 0, 1)
        _number(record, f"{name}.jaccard", path, 0, 1)
    for parameter in PARAMETERS:
        default = _field(record, f"defaults.{parameter}", path)
        entries = _field(record, f"sweeps.{parameter}", path)
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: field sweeps.{parameter} must be a non-empty list.")
        for index, entry in enumerate(entries):
            where = f"sweeps.{parameter}[{index}]"
            if not isinstance(entry, dict) or "value" not in entry:
                raise ValueError(f"{path}: field {where}.value is missing.")
            for measure in ("answer_kept", "jaccard"):
                if measure not in entry:
                    raise ValueError(f"{path}: field {where}.{measure} is missing.")
                _number(entry, measure, f"{path}: {where}", 0, 1)
        if default not in [entry["value"] for entry in entries]:
            raise ValueError(f"{path}: field defaults.{parameter} = {default!r} is not among sweeps.{parameter}.")


def read_record(path: Path) -> dict:
    """Parse one JSON file, raising ValueError that names the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error.msg} at line {error.lineno}).") from None


# Figures.


def _union(heads: list[list[int]]) -> np.ndarray:
    return np.array(sorted({position for head in heads for position in head}), dtype=int)


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Group sorted positions into runs of consecutive positions, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and position == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], position)
        else:
            runs.append((position, position))
    return runs


def draw_bridges(record: dict, path: Path) -> Path:
    """Draw the direct attention (top) and CircuitKV's score (bottom) over token position, log scale.

    Kept positions are the union over KV heads: a position kept by both
    rankings in some KV head is a blue dot, and a bridge of some KV head (kept
    by the walk only) an orange triangle. Red lines mark the runs of answer
    tokens and grey bands the sinks and the window, which both rankings always keep.
    """
    num_tokens = record["num_tokens"]
    positions = np.arange(num_tokens)
    bridges = _union([[item["position"] for item in head] for head in record["bridges"]])
    both = _union([sorted(set(walk) & set(attention))
                   for walk, attention in zip(record["kept"]["circuitkv"], record["kept"]["attention"])])
    forced = (record["forced"]["sinks"], record["forced"]["window"])
    free = (both >= forced[0]) & (both < num_tokens - forced[1])
    both = np.setdiff1d(both[free], bridges)  # the grey bands already show the forced positions

    figure, panels = plt.subplots(2, 1, sharex=True, figsize=(TEXT_WIDTH_IN, 2.5), layout="constrained")
    curves = (("Direct attention", record["direct_attention"]), ("CircuitKV score", record["circuitkv_score"]))
    for panel, (label, values) in zip(panels, curves):
        values = np.asarray(values, dtype=float)
        shown = np.where(values > 0, values, np.nan)  # a log axis has no place for zero
        panel.plot(positions, shown, color=CURVE_COLOR, linewidth=0.4, zorder=1)
        panel.axvspan(-0.5, forced[0] - 0.5, color="0.85", linewidth=0, zorder=0, label="Always kept")
        panel.axvspan(num_tokens - forced[1] - 0.5, num_tokens - 0.5, color="0.85", linewidth=0, zorder=0)
        # A run of a few answer tokens is far narrower than a printed line, so each run is drawn as one line.
        for first, last in _runs(record["answer_positions"]):
            panel.axvline((first + last) / 2, color=ANSWER_COLOR, linewidth=1.0, alpha=0.8, zorder=0,
                          label="Answer tokens" if first == record["answer_positions"][0] else None)
        kept = both[values[both] > 0]
        panel.scatter(kept, values[kept], s=5, color=KEPT_BOTH_COLOR, linewidths=0, zorder=2,
                      label="Kept by both")
        walked = bridges[values[bridges] > 0]
        panel.scatter(walked, values[walked], s=14, marker="^", color=BRIDGE_COLOR, edgecolors="black",
                      linewidths=0.3, zorder=3, label="Bridge (kept by the walk only)")
        panel.set_yscale("log")
        panel.set_ylabel(label)
        panel.spines[["top", "right"]].set_visible(False)
        panel.set_xlim(-0.5, num_tokens - 0.5)

    panels[-1].set_xlabel("Token position")
    handles, labels = panels[0].get_legend_handles_labels()
    order = [labels.index(name) for name in
             ("Kept by both", "Bridge (kept by the walk only)", "Answer tokens", "Always kept") if name in labels]
    panels[0].legend([handles[i] for i in order], [labels[i] for i in order], ncol=len(order), frameon=False,
                     loc="lower center", bbox_to_anchor=(0.5, 1.0), borderaxespad=0.2, handletextpad=0.4)
    return _save(figure, path)


def _tick_label(value) -> str:
    return r"$\infty$" if value is None else f"{value:g}"


def draw_sensitivity(record: dict, path: Path) -> Path:
    """Draw the answer share (top row) and the Jaccard index (bottom row) against T, N and S (columns).

    Lines are the means over prompts and bands their range over prompts. The
    grey dash-dot line is the ranking by direct attention and the dotted line
    marks the default setting. Grid points are evenly spaced because every
    grid is roughly geometric.
    """
    figure, panels = plt.subplots(len(MEASURES), len(PARAMETERS), sharex="col", sharey="row",
                                  figsize=(TEXT_WIDTH_IN, 2.7), layout="constrained")
    for column, (parameter, (_, axis_label)) in enumerate(PARAMETERS.items()):
        entries = record["sweeps"][parameter]
        x = np.arange(len(entries))
        default_index = [entry["value"] for entry in entries].index(record["defaults"][parameter])
        for row, (measure, measure_label, scale) in enumerate(MEASURES):
            panel = panels[row][column]
            means = [scale * entry[measure] for entry in entries]
            spreads = [entry.get(f"{measure}_per_prompt") or [entry[measure]] for entry in entries]
            panel.fill_between(x, [scale * min(spread) for spread in spreads],
                               [scale * max(spread) for spread in spreads], color=KEPT_BOTH_COLOR, alpha=0.2,
                               linewidth=0, label="Range over prompts")
            panel.plot(x, means, color=KEPT_BOTH_COLOR, marker="o", markersize=3, linewidth=1.0,
                       label="CircuitKV, mean over prompts")
            panel.axhline(scale * record["attention"][measure], color="0.4", linestyle="-.", linewidth=0.8,
                          label="Ranking by direct attention")
            panel.axvline(default_index, color="black", linestyle=":", linewidth=0.8, label="Default setting")
            panel.spines[["top", "right"]].set_visible(False)
            if column == 0:
                panel.set_ylabel(measure_label)
        panels[-1][column].set_xticks(x, [_tick_label(entry["value"]) for entry in entries])
        panels[-1][column].set_xlabel(axis_label)
    # An axhline does not widen the autoscaled range, so the share row's top is set to cover it and the bands.
    for row, (measure, _, scale) in enumerate(MEASURES):
        highest = max(
            [record["attention"][measure]]
            + [max(entry.get(f"{measure}_per_prompt") or [entry[measure]])
               for entries in record["sweeps"].values() for entry in entries]
        )
        top = 1.0 if measure == "jaccard" else max(scale * highest * 1.1, 1e-9)
        panels[row][0].set_ylim(0, top)
    handles, labels = panels[0][0].get_legend_handles_labels()
    order = [labels.index(name) for name in
             ("CircuitKV, mean over prompts", "Range over prompts", "Ranking by direct attention", "Default setting")]
    figure.legend([handles[i] for i in order], [labels[i] for i in order], ncol=len(order), frameon=False,
                  loc="outside upper center")
    return _save(figure, path)


# Macros and the template context.


def _percent(share: float) -> Latex:
    return format_number(100 * share, 1)


def _setting_value(value) -> Latex:
    """Format a grid value for the text: integers plainly, 0.25 with two decimals, no limit as infinity."""
    if value is None:
        return Latex(r"\ensuremath{\infty}")
    if float(value).is_integer():
        return Latex(str(int(value)))
    return format_number(value, 2 if round(value * 10) != value * 10 else 1)


def _key_value(value) -> str:
    return "inf" if value is None else f"{value:g}"


def best_setting(entries: list[dict], default) -> tuple[int, dict]:
    """Return the index and entry with the highest answer share; a tie goes to the default, then to the first."""
    best = max(entry["answer_kept"] for entry in entries)
    tied = [index for index, entry in enumerate(entries) if entry["answer_kept"] == best]
    for index in tied:
        if entries[index]["value"] == default:
            return index, entries[index]
    return tied[0], entries[tied[0]]


def analysis_macros(
    bridges: dict,
    sensitivity: dict,
    bridges_source: str = str(DEFAULT_OUTPUT_DIR / BRIDGES_FILE),
    sensitivity_source: str = str(DEFAULT_OUTPUT_DIR / SENSITIVITY_FILE),
) -> list[tuple[str, Latex, Latex]]:
    """Return ``(key, formatted value, source)`` for every number the figures' captions or the text may quote.

    Shares are percentages (0 to 100, one decimal) and Jaccard indexes keep
    their 0 to 1 scale with two decimals. The source names the file and the field.
    """
    macros = []

    def add(key: str, value: Latex, source: str, field: str) -> None:
        macros.append((key, value, Latex(f"{source}: {field}")))

    summary = bridges["summary"]
    free_slots = bridges["budget"] - bridges["forced"]["sinks"] - bridges["forced"]["window"]
    add("bridges/layer", Latex(str(bridges["layer"])), bridges_source, "layer")
    add("bridges/budget", Latex(str(bridges["budget"])), bridges_source, "budget")
    add("bridges/prompt_tokens", Latex(str(bridges["num_tokens"])), bridges_source, "num_tokens")
    add("bridges/kv_heads", Latex(str(bridges["num_kv_heads"])), bridges_source, "num_kv_heads")
    add("bridges/free_slots", Latex(str(free_slots)), bridges_source, "budget - forced.sinks - forced.window")
    add("bridges/count", format_number(summary["bridges"]["mean"], 1), bridges_source, "summary.bridges.mean")
    if free_slots > 0:
        add("bridges/share_of_free", _percent(summary["bridges"]["mean"] / free_slots), bridges_source,
            "summary.bridges.mean / (budget - forced.sinks - forced.window)")
    add("bridges/answer_tokens", Latex(str(summary["answer_tokens"])), bridges_source, "summary.answer_tokens")
    for ranking in ("circuitkv", "attention"):
        add(f"bridges/answer_kept/{ranking}", _percent(summary["answer_kept"][ranking]), bridges_source,
            f"summary.answer_kept.{ranking}")

    config = sensitivity["config"]
    add("sensitivity/prompts", Latex(str(len(config["sample_ids"]))), sensitivity_source, "len(config.sample_ids)")
    add("sensitivity/layers", Latex(str(len(sensitivity["layers"]))), sensitivity_source, "len(layers)")
    add("sensitivity/budget", Latex(str(config["budget"])), sensitivity_source, "config.budget")
    add("sensitivity/context_tokens", Latex(str(config["context_tokens"])), sensitivity_source,
        "config.context_tokens")
    add("sensitivity/seconds", Latex(str(round(sensitivity["seconds"]))), sensitivity_source, "seconds")
    for name in ("reference", "attention"):
        add(f"sensitivity/answer_kept/{name}", _percent(sensitivity[name]["answer_kept"]), sensitivity_source,
            f"{name}.answer_kept")
    add("sensitivity/jaccard/attention", format_number(sensitivity["attention"]["jaccard"], 2), sensitivity_source,
        "attention.jaccard")

    for parameter, (short, _) in PARAMETERS.items():
        entries = sensitivity["sweeps"][parameter]
        default = sensitivity["defaults"][parameter]
        add(f"sensitivity/default_{short}", _setting_value(default), sensitivity_source, f"defaults.{parameter}")
        best_index, best = best_setting(entries, default)
        add(f"sensitivity/best_{short}", _setting_value(best["value"]), sensitivity_source,
            f"sweeps.{parameter}[{best_index}].value, the highest answer_kept")
        add(f"sensitivity/best_{short}/answer_kept", _percent(best["answer_kept"]), sensitivity_source,
            f"sweeps.{parameter}[{best_index}].answer_kept")
        for index, entry in enumerate(entries):
            prefix = setting_key(parameter, entry["value"])
            add(f"{prefix}/value", _setting_value(entry["value"]), sensitivity_source,
                f"sweeps.{parameter}[{index}].value")
            add(f"{prefix}/answer_kept", _percent(entry["answer_kept"]), sensitivity_source,
                f"sweeps.{parameter}[{index}].answer_kept")
            add(f"{prefix}/jaccard", format_number(entry["jaccard"], 2), sensitivity_source,
                f"sweeps.{parameter}[{index}].jaccard")
    entry = default_entry(sensitivity)
    index = sensitivity["sweeps"]["temperature"].index(entry)
    add("sensitivity/answer_kept/default", _percent(entry["answer_kept"]), sensitivity_source,
        f"sweeps.temperature[{index}].answer_kept, the default configuration")
    add("sensitivity/jaccard/default", format_number(entry["jaccard"], 2), sensitivity_source,
        f"sweeps.temperature[{index}].jaccard, the default configuration")
    return macros


def setting_key(parameter: str, value) -> str:
    """Return the macro key prefix of one grid point, e.g. ``sensitivity/T/0.25`` or ``sensitivity/S/inf``."""
    return f"sensitivity/{PARAMETERS[parameter][0]}/{_key_value(value)}"


def _printed_percent(share: float) -> float:
    """Round a share as ``_percent`` prints it, so wording chosen from it agrees with the printed numbers."""
    return round(100 * share, 1)


def comparison_word(first: float, second: float) -> str:
    """Return ``more``, ``fewer`` or ``as many``: how share ``first`` compares with ``second`` as printed."""
    first, second = _printed_percent(first), _printed_percent(second)
    if first == second:
        return "as many"
    return "more" if first > second else "fewer"


def default_entry(sensitivity: dict) -> dict:
    """Return the sweep entry of the default configuration (sampled walks, default T, N and S)."""
    default = sensitivity["defaults"]["temperature"]
    return next(entry for entry in sensitivity["sweeps"]["temperature"] if entry["value"] == default)


def bridges_answer_wording(summary: dict) -> str:
    """Return ``none``, ``same``, ``more`` or ``fewer``: how CircuitKV's answer share compares with attention's."""
    walk = _printed_percent(summary["answer_kept"]["circuitkv"])
    attention = _printed_percent(summary["answer_kept"]["attention"])
    if walk == attention:
        return "none" if walk == 0 else "same"
    return "more" if walk > attention else "fewer"


def walkers_trend(sensitivity: dict) -> dict:
    """Describe the Jaccard index over the walker grid: the key prefixes of its ends and whether it rises.

    It rises when no printed value drops from one walker count to the next
    and the last printed value exceeds the first.
    """
    entries = sensitivity["sweeps"]["num_walkers"]
    printed = [round(entry["jaccard"], 2) for entry in entries]
    rises = all(low <= high for low, high in zip(printed, printed[1:])) and printed[-1] > printed[0]
    return {
        "low_key": setting_key("num_walkers", entries[0]["value"]),
        "high_key": setting_key("num_walkers", entries[-1]["value"]),
        "jaccard_rises": len(entries) > 1 and rises,
    }


def sweep_beats_attention(sensitivity: dict) -> bool:
    """Check whether some grid point keeps a larger printed share of answer tokens than the attention ranking."""
    attention = _printed_percent(sensitivity["attention"]["answer_kept"])
    return any(
        _printed_percent(entry["answer_kept"]) > attention
        for entries in sensitivity["sweeps"].values() for entry in entries
    )


def display_path(path: Path, results_dir: Path) -> str:
    """Return ``path`` relative to the repository, else to the results directory's parent, so no user name leaks."""
    base = REPOSITORY if results_dir.resolve().is_relative_to(REPOSITORY) else results_dir.resolve().parent
    return str(path.resolve().relative_to(base))


def analysis_context(results_dir: Path, figure_dir: Path) -> tuple[dict | None, list, list[Path]]:
    """Read both diagnostics files, draw both figures and return (template context, macros, figure paths).

    Returns ``(None, [], [])`` when either file is absent, so the paper
    renders without these figures.

    Raises:
        ValueError: A file is not valid JSON or lacks a field; the message names the file and the field.
    """
    bridges_path = results_dir / "diagnostics" / BRIDGES_FILE
    sensitivity_path = results_dir / "diagnostics" / SENSITIVITY_FILE
    if not bridges_path.is_file() or not sensitivity_path.is_file():
        return None, [], []
    bridges = read_record(bridges_path)
    validate_bridges(bridges, str(bridges_path))
    sensitivity = read_record(sensitivity_path)
    validate_sensitivity(sensitivity, str(sensitivity_path))

    paths = [
        drawn(figure_dir / BRIDGES_FIGURE, json.dumps(bridges, sort_keys=True),
              lambda: draw_bridges(bridges, figure_dir / BRIDGES_FIGURE), Path(__file__)),
        drawn(figure_dir / SENSITIVITY_FIGURE, json.dumps(sensitivity, sort_keys=True),
              lambda: draw_sensitivity(sensitivity, figure_dir / SENSITIVITY_FIGURE), Path(__file__)),
    ]
    macros = analysis_macros(
        bridges, sensitivity, display_path(bridges_path, results_dir), display_path(sensitivity_path, results_dir)
    )
    context = {
        "bridges_task": task_label(bridges["config"]["task"]),
        "sensitivity_task": task_label(sensitivity["config"]["task"]),
        "bridges_answers": bridges_answer_wording(bridges["summary"]),
        # Answer tokens that CircuitKV keeps compared with the attention ranking: "more", "fewer" or "as many",
        # at the bridges layer and over the whole sweep's default configuration.
        "bridges_comparison": comparison_word(
            bridges["summary"]["answer_kept"]["circuitkv"], bridges["summary"]["answer_kept"]["attention"]
        ),
        "sensitivity_comparison": comparison_word(
            default_entry(sensitivity)["answer_kept"], sensitivity["attention"]["answer_kept"]
        ),
        "has_bridges": bridges["summary"]["bridges"]["mean"] > 0,
        "walkers": walkers_trend(sensitivity),
        "sweep_beats_attention": sweep_beats_attention(sensitivity),
    }
    return context, macros, paths
