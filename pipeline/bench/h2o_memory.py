"""Peak memory of H2O scoring as the prompt grows: ``python -m pipeline.bench.h2o_memory``.

H2O needs the column sums of the causal attention over every prompt query.
Built densely, one head's attention matrix alone grows with n^2; streamed in
blocks of query rows, the extra memory grows with n. The script prefills
prompts of each length on the chosen model, then measures the peak extra
memory of scoring every layer and prints it next to the n^2 figure that a
dense matrix would need.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import torch

from pipeline.bench.memory import MemoryProbeError, PeakMemory, with_fixed_mmap_threshold
from pipeline.methods import build_method, score_layers
from pipeline.methods.base import block_rows
from pipeline.model.loading import DEFAULT_MODEL, ModelNotFoundError, load_model
from pipeline.model.prefill import prefill

logger = logging.getLogger("pipeline.bench")

MIB = 2**20


def measure(model, num_tokens: int, seed: int = 0) -> dict:
    """Prefill ``num_tokens`` random tokens, then score them with H2O; return time and peak memory."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(100, model.config.vocab_size, (1, num_tokens), generator=generator)  # (1, n)
    full = prefill(model, input_ids)

    h2o = build_method("h2o")
    with PeakMemory(model.device) as peak:
        started = time.perf_counter()
        score_layers(h2o, full)
        seconds = time.perf_counter() - started
    dense_bytes = num_tokens * num_tokens * 4  # one float32 attention matrix of one head
    return {"tokens": num_tokens, "seconds": seconds, "peak_bytes": peak.peak_bytes, "dense_bytes": dense_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.h2o_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="4096,8192", help="comma-separated prompt lengths (default: %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="'default' or a local checkpoint directory")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    args = parser.parse_args(argv)
    with_fixed_mmap_threshold("pipeline.bench.h2o_memory", sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        lengths = [int(item) for item in args.lengths.split(",") if item.strip()]
    except ValueError:
        parser.error(f"--lengths {args.lengths!r}: expected comma-separated integers such as 4096,8192")
    try:
        model, _, _ = load_model(args.model, args.device)
    except ModelNotFoundError as error:
        logger.error("%s", error)
        return 2
    limit = model.config.max_position_embeddings
    too_long = [n for n in lengths if n > limit or n < 2]
    if too_long:
        parser.error(f"--lengths {too_long}: the model accepts 2 to {limit} tokens")

    rows = []
    try:
        for n in lengths:
            logger.info("Prefilling and scoring %d tokens", n)
            rows.append(measure(model, n))
    except MemoryProbeError as error:
        logger.error("%s", error)
        return 2

    group = model.config.num_attention_heads // model.config.num_key_value_heads
    blocks = ", ".join(f"{block_rows(row['tokens'], group)} at {row['tokens']}" for row in rows)
    print(f"H2O scoring on {model.device.type}, all layers; query rows per block: {blocks}")
    print(f"{'tokens':>8} {'seconds':>9} {'peak extra MiB':>15} {'dense n^2 MiB':>14} {'growth':>7}")
    for row in rows:
        growth = row["peak_bytes"] / rows[0]["peak_bytes"] if rows[0]["peak_bytes"] else float("nan")
        print(
            f"{row['tokens']:>8} {row['seconds']:>9.1f} {row['peak_bytes'] / MIB:>15.1f} "
            f"{row['dense_bytes'] / MIB:>14.1f} {growth:>6.2f}x"
        )
    if len(rows) >= 2:
        ratio = rows[-1]["tokens"] / rows[0]["tokens"]
        print(f"Prompt {ratio:g}x longer; quadratic growth would be {ratio**2:g}x.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
