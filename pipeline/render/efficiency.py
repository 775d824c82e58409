"""Macros for the efficiency paragraph, read from ``data/results/efficiency/efficiency.json``.

``make bench`` writes that file: per prompt length, the prefill time, each
scorer's time and peak extra memory, the decoding time per token and the KV
cache bytes at each budget. The paper quotes one prompt length, the one its
experiments used when the benchmark measured it, else the longest measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.render.latex import Latex, signed_number
from pipeline.render.numbers import percent_change, percent_of

EFFICIENCY_FILE = Path("efficiency") / "efficiency.json"
MIB = 2**20
SCORERS = {"CircuitKV-MC": "circuitkv", "CircuitKV-exact": "exact", "SnapKV": "snapkv", "H2O": "h2o"}


def _number(value: float, digits: int = 1) -> Latex:
    return signed_number(value, digits)


def efficiency_macros(results_dir: Path, context_tokens: list[int]) -> tuple[dict | None, list]:
    """Return the facts the text needs (or None without the file) and the macros ``eff/...``."""
    path = results_dir / EFFICIENCY_FILE
    if not path.is_file():
        return None, []
    shown = f"data/results/{EFFICIENCY_FILE.as_posix()}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        by_length = {int(entry["tokens"]): entry for entry in data["results"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: cannot read the efficiency results ({error}); rerun `make bench`.") from None
    if not by_length:
        raise ValueError(f"{path}: field results is empty; rerun `make bench`.")
    shared = sorted(set(by_length) & set(context_tokens))
    tokens = shared[-1] if shared else max(by_length)
    entry = by_length[tokens]
    where = f"{shown}: results[tokens={tokens}]"

    try:
        macros = [
            ("eff/tokens", Latex(str(tokens)), Latex(f"{where}.tokens")),
            ("eff/prefill", _number(entry["prefill_s"]), Latex(f"{where}.prefill_s")),
        ]
        for label, slug in SCORERS.items():
            if label in entry["scoring_s"]:
                share = percent_of(entry["scoring_s"][label], entry["prefill_s"])
                macros.append((f"eff/scoring/{slug}", _number(share, 0),
                               Latex(f"100 x scoring_s[{label}] / prefill_s, {where}")))
                macros.append((f"eff/peak/{slug}", _number(entry["peak_bytes"][label] / MIB),
                               Latex(f"{where}.peak_bytes[{label}] in MiB")))
        budgets = sorted(int(key.removeprefix("B=")) for key in entry["kv_bytes"] if key.startswith("B="))
        for budget in budgets:
            name = f"B={budget}"
            macros.append((f"eff/budget/b{budget}", Latex(str(budget)), Latex(f"{where}.kv_bytes key {name}")))
            macros.append((f"eff/kv/b{budget}", _number(percent_of(entry["kv_bytes"][name], entry["kv_bytes"]["full"])),
                           Latex(f"100 x kv_bytes[{name}] / kv_bytes[full], {where}")))
            macros.append((f"eff/decode/b{budget}",
                           _number(percent_change(entry["decode_s_per_token"][name], entry["decode_s_per_token"]["full"]), 0),
                           Latex(f"percent change of decode_s_per_token[{name}] from [full], {where}")))
        macros.append(("eff/kv/full", _number(entry["kv_bytes"]["full"] / MIB, 0),
                       Latex(f"{where}.kv_bytes[full] in MiB")))
    except (KeyError, TypeError, ZeroDivisionError, ValueError) as error:
        raise ValueError(f"{path}: results[tokens={tokens}] lacks a field ({error}); rerun `make bench`.") from None
    facts = {
        "budgets": budgets,
        "device": data.get("device_name") or data.get("device", ""),
        "table": scaling_table(path, by_length),
    }
    return facts, macros


def scaling_table(path: Path, by_length: dict[int, dict]) -> dict:
    """Tabulate each scorer's time in percent of the prefill and its peak extra memory in MiB, at every length."""
    lengths = sorted(by_length)
    rows = []
    try:
        labels = [label for label in by_length[lengths[0]]["scoring_s"] if all(
            label in by_length[n]["scoring_s"] for n in lengths)]
        for label in labels:
            rows.append({
                "label": label,
                "time": [signed_number(percent_of(by_length[n]["scoring_s"][label], by_length[n]["prefill_s"]), 0)
                         for n in lengths],
                "memory": [signed_number(by_length[n]["peak_bytes"][label] / MIB) for n in lengths],
            })
        prefill = [signed_number(by_length[n]["prefill_s"]) for n in lengths]
    except (KeyError, TypeError, ZeroDivisionError) as error:
        raise ValueError(f"{path}: a measured length lacks a field ({error}); rerun `make bench`.") from None
    return {"lengths": lengths, "rows": rows, "prefill": prefill}
