"""Efficiency of the scorers against the prefill: ``make bench`` (``python -m pipeline.bench.efficiency``).

For each prompt length n, on the chosen model and device, the benchmark
measures the median over repeats of:

- the prefill time;
- each scorer's time, and its ratio to the prefill of the same run;
- each scorer's peak extra memory, from one untimed run per scorer. On CPU it
  runs in a child process whose glibc maps every large allocation on its own,
  so that the resident set follows the live tensors (see ``bench.memory``);
- the decode time per token from a cache of budget 128 and 512 and from the full cache;
- the KV cache bytes of each.

Prompts are the first n tokens of the essay text (``ESSAYS_DIR``, or the
built-in default). The table is printed with the targets below and written
as JSON to ``data/results/efficiency/``.

Targets at 4096 tokens: CircuitKV-exact scoring costs at most 1.5x H2O's and
at most 25% of the prefill; CircuitKV with N = 1024 walkers and S = 10 at most
25% of the prefill. From 2048 to 8192 tokens every scorer's extra memory grows
at most linearly (at most 4x).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.atomic import write_text_atomically
from pipeline.bench.memory import MMAP_THRESHOLD_ENV, PROBE_MMAP_THRESHOLD, MemoryProbeError, PeakMemory
from pipeline.benchmarks.haystack import ESSAYS_DIR_ENV, read_essays
from pipeline.experiments import provenance
from pipeline.methods import build_method, keep_positions, score_layers
from pipeline.model.loading import DEFAULT_MODEL, ModelNotFoundError, load_model
from pipeline.model.prefill import clone_cache, compress_cache, greedy_decode, prefill

logger = logging.getLogger("pipeline.bench")

SCORERS = {
    "SnapKV": ("snapkv", {}),
    "H2O": ("h2o", {}),
    "PyramidKV": ("pyramidkv", {}),
    "CircuitKV-MC": ("circuitkv", {"num_walkers": 1024, "max_steps": 10}),
    "CircuitKV-exact": ("circuitkv-exact", {}),
}
DECODE_BUDGETS = (128, 512)
MIB = 2**20


@dataclass
class LengthResult:
    """Medians at one prompt length; times in seconds, memory and KV cache in bytes."""

    tokens: int
    prefill_s: float
    scoring_s: dict[str, float] = field(default_factory=dict)
    scoring_ratio: dict[str, float] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)
    decode_s_per_token: dict[str, float] = field(default_factory=dict)
    kv_bytes: dict[str, int] = field(default_factory=dict)


def prompt_ids(tokenizer, lengths: list[int], essays_dir: str | None) -> dict[int, torch.Tensor]:
    """Return, per length n, the first n tokens of the essay text, shape (1, n); the text is tokenized once."""
    ids = tokenizer(read_essays(essays_dir), add_special_tokens=False).input_ids
    if len(ids) < max(lengths):
        raise ValueError(
            f"The essay text has {len(ids)} tokens, fewer than {max(lengths)}; add essays or use shorter lengths."
        )
    return {n: torch.tensor([ids[:n]]) for n in lengths}


def timed(function, device: torch.device) -> float:
    """Seconds that ``function()`` takes, synchronized on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure_memory(model, input_ids: torch.Tensor, seed: int) -> dict[str, int]:
    """Return each scorer's peak extra memory in bytes at one prompt length, from one run each."""
    full = prefill(model, input_ids)
    peaks = {}
    for label, (name, params) in SCORERS.items():
        method = build_method(name, **params)
        with PeakMemory(model.device) as peak:
            score_layers(method, full, seed)
        peaks[label] = peak.peak_bytes
    return peaks


def measure_memory_in_child(args: argparse.Namespace, lengths: list[int]) -> dict[int, dict[str, int]]:
    """Run the memory pass in a child process with a fixed glibc mmap threshold; return peaks by length."""
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "memory.json"
        command = [
            sys.executable, "-m", "pipeline.bench.efficiency", "--memory-pass", str(output),
            "--lengths", ",".join(str(n) for n in lengths), "--model", args.model, "--seed", str(args.seed),
        ]
        if args.device:
            command += ["--device", args.device]
        if args.essays_dir:
            command += ["--essays-dir", args.essays_dir]
        environment = {**os.environ, MMAP_THRESHOLD_ENV: PROBE_MMAP_THRESHOLD}
        completed = subprocess.run(command, env=environment)
        if completed.returncode != 0:
            raise MemoryProbeError(f"The memory pass failed with exit code {completed.returncode}; see its log above.")
        peaks = json.loads(output.read_text())
    return {int(n): values for n, values in peaks.items()}


def measure_length(
    model, input_ids: torch.Tensor, repeats: int, decode_tokens: int, seed: int, peaks: dict[str, int] | None
) -> LengthResult:
    """Measure the prefill, every scorer and decoding at one prompt length.

    Scorer memory comes from ``peaks`` when given, else from a probed run in this process.
    """
    device = model.device
    n = int(input_ids.shape[1])
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    entry_bytes = 2 * config.num_key_value_heads * head_dim * next(model.parameters()).element_size()

    full = prefill(model, input_ids)  # warm-up, and the prefill the scorers read
    prefill_times = [prefill(model, input_ids).seconds for _ in range(repeats)]
    result = LengthResult(tokens=n, prefill_s=statistics.median(prefill_times))

    scores = {}
    peaks = peaks if peaks is not None else measure_memory(model, input_ids, seed)
    for label, (name, params) in SCORERS.items():
        method = build_method(name, **params)
        scores[label] = score_layers(method, full, seed)  # warm-up
        times = [timed(lambda: score_layers(method, full, seed), device) for _ in range(repeats)]
        result.scoring_s[label] = statistics.median(times)
        result.scoring_ratio[label] = result.scoring_s[label] / result.prefill_s
        result.peak_bytes[label] = peaks[label]

    # Decoding from SnapKV-compressed caches and from the full cache.
    snapkv = build_method("snapkv")
    caches = {"full": full.cache}
    for budget in DECODE_BUDGETS:
        if budget < n:
            caches[f"B={budget}"] = compress_cache(full, keep_positions(snapkv, scores["SnapKV"], budget))
    for label, cache in caches.items():
        times = []
        for _ in range(repeats):
            _, seconds = greedy_decode(model, clone_cache(cache), full.first_token, n, decode_tokens, set())
            times.append(seconds / (decode_tokens - 1))  # the first token comes from the prefill
        result.decode_s_per_token[label] = statistics.median(times)
        lengths = sum(int(layer.keys.shape[-2]) for layer in cache.layers)
        result.kv_bytes[label] = entry_bytes * lengths
    return result


def targets(results: list[LengthResult]) -> list[tuple[str, bool | None]]:
    """List each target and whether it holds; None where the lengths it needs were not measured."""
    by_length = {result.tokens: result for result in results}
    checks: list[tuple[str, bool | None]] = []
    at_4096 = by_length.get(4096)
    checks.append((
        "4096 tokens: CircuitKV-exact scoring <= 1.5x H2O scoring",
        None if at_4096 is None else at_4096.scoring_s["CircuitKV-exact"] <= 1.5 * at_4096.scoring_s["H2O"],
    ))
    checks.append((
        "4096 tokens: CircuitKV-exact scoring <= 25% of the prefill",
        None if at_4096 is None else at_4096.scoring_ratio["CircuitKV-exact"] <= 0.25,
    ))
    checks.append((
        "4096 tokens: CircuitKV-MC (N=1024, S=10) scoring <= 25% of the prefill",
        None if at_4096 is None else at_4096.scoring_ratio["CircuitKV-MC"] <= 0.25,
    ))
    low, high = by_length.get(2048), by_length.get(8192)
    for label in SCORERS:
        holds = None
        if low is not None and high is not None and low.peak_bytes[label] > 0:
            holds = high.peak_bytes[label] <= 4 * low.peak_bytes[label]
        checks.append((f"2048 -> 8192 tokens: {label} extra memory grows at most 4x", holds))
    return checks


def format_table(results: list[LengthResult], device: str) -> str:
    """Format the printed table: one block of rows per prompt length."""
    lines = [f"Device: {device}; medians over repeats; scoring ratio = scoring time / prefill time"]
    header = f"{'tokens':>6}  {'what':<16} {'seconds':>9} {'ratio':>7} {'peak MiB':>9} {'KV MiB':>8}"
    lines.append(header)
    lines.append("-" * len(header))
    for result in results:
        lines.append(f"{result.tokens:>6}  {'prefill':<16} {result.prefill_s:>9.3f}")
        for label in SCORERS:
            lines.append(
                f"{'':>6}  {label:<16} {result.scoring_s[label]:>9.3f} {result.scoring_ratio[label]:>7.3f} "
                f"{result.peak_bytes[label] / MIB:>9.1f}"
            )
        for label, seconds in result.decode_s_per_token.items():
            lines.append(
                f"{'':>6}  {'decode ' + label:<16} {seconds:>9.4f} {'':>7} {'':>9} "
                f"{result.kv_bytes[label] / MIB:>8.1f}   (seconds per token)"
            )
    lines.append("")
    for text, holds in targets(results):
        if holds is None:
            status = "not measured"
        else:
            status = "holds" if holds else "MISSED"
        lines.append(f"{status:>12}  {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.bench.efficiency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lengths", default="1024,2048,4096,8192", help="prompt lengths (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (default: %(default)s)")
    parser.add_argument("--decode-tokens", type=int, default=32,
                        help="tokens decoded per repeat (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="'default' or a local checkpoint directory")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--essays-dir", default=os.environ.get(ESSAYS_DIR_ENV),
                        help=f"directory of .txt essays for the prompts (default: ${ESSAYS_DIR_ENV})")
    parser.add_argument("--seed", type=int, default=0, help="walker seed (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("data/results/efficiency/efficiency.json"),
                        help="JSON file to write (default: %(default)s)")
    parser.add_argument("--memory-pass", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        lengths = [int(item) for item in args.lengths.split(",") if item.strip()]
    except ValueError:
        parser.error(f"--lengths {args.lengths!r}: expected comma-separated integers such as 1024,2048")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.decode_tokens < 2:
        parser.error(f"--decode-tokens must be at least 2, got {args.decode_tokens}")

    try:
        model, tokenizer, source = load_model(args.model, args.device)
        limit = model.config.max_position_embeddings
        too_long = [n for n in lengths if not 64 <= n <= limit]
        if too_long:
            raise ValueError(f"--lengths {too_long}: the model accepts prompts of 64 to {limit} tokens here.")
        prompts = prompt_ids(tokenizer, lengths, args.essays_dir)
        if args.memory_pass is not None:
            peaks = {n: measure_memory(model, prompts[n], args.seed) for n in tqdm(lengths, desc="memory")}
            args.memory_pass.write_text(json.dumps(peaks))
            return 0
        peaks = measure_memory_in_child(args, lengths) if model.device.type == "cpu" else {}
        results = [
            measure_length(model, prompts[n], args.repeats, args.decode_tokens, args.seed, peaks.get(n))
            for n in tqdm(lengths, desc="lengths", unit="length")
        ]
    except (ModelNotFoundError, FileNotFoundError, ValueError, MemoryProbeError) as error:
        logger.error("%s", error)
        return 2

    record = provenance.collect(model.device)
    print(format_table(results, f"{model.device.type} ({record.device_name}), {record.torch_threads} threads"))
    payload = {
        "model": source.model_id,
        "device": model.device.type,
        "device_name": record.device_name,
        "repeats": args.repeats,
        "decode_tokens": args.decode_tokens,
        "results": [asdict(result) for result in results],
        "targets": [{"target": text, "holds": holds} for text, holds in targets(results)],
        "provenance": record.model_dump(mode="json"),
    }
    write_text_atomically(args.output, json.dumps(payload, indent=1) + "\n")
    logger.info("Wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
