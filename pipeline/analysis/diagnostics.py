"""Why CircuitKV keeps what it keeps: per-layer diagnostics for one prompt.

For one prompt and layer, with the context (everything before the question)
scored and compressed as in the context protocol:

- visits: CircuitKV's visit counts by position, averaged over KV heads, and
  the share of them that lands just after the sink tokens;
- overlap: the Jaccard index between CircuitKV's kept set and each baseline's;
- later attention: the share of the question queries' attention over the
  context that falls on each method's kept tokens, which is what a cache
  that cannot see the question must preserve;
- bridges: tokens CircuitKV keeps although the walk's start query pays them
  too little attention to be kept for it directly.

``python -m pipeline.analysis.diagnostics`` writes them as JSON for the
paper's figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipeline.atomic import write_text_atomically
from pipeline.methods import Method, build_method, keep_positions
from pipeline.methods.base import LayerView
from pipeline.methods.circuitkv import CircuitKV
from pipeline.model.prefill import Prefill

logger = logging.getLogger(__name__)

BASELINES = ("snapkv", "h2o", "streamingllm")
NEAR_SINK_SPAN = 64  # positions after the sinks counted as "next to the sinks"


@dataclass(frozen=True)
class Bridge:
    """A token kept by the walk but not by the start query's own attention.

    Attributes:
        position: Token position in the prompt.
        walk_rank: Rank of its CircuitKV score among unforced positions (0 = highest).
        attention_rank: Rank of the start query's attention to it among the same positions.
        attention: The start query's attention to it, averaged over the group's heads.
    """

    position: int
    walk_rank: int
    attention_rank: int
    attention: float


@dataclass(frozen=True)
class LayerDiagnostics:
    """Diagnostics of one layer, averaged over its KV heads except for ``bridges``.

    Attributes:
        layer: Layer index.
        context_tokens: Tokens scored and compressed.
        question_tokens: Later queries whose attention is measured.
        budget: KV entries kept per KV head.
        visits: CircuitKV visit counts by position, mean over KV heads, length context_tokens.
        near_sink_share: Share of the visits after the start that land within
            ``NEAR_SINK_SPAN`` positions after the sinks.
        jaccard: Method name -> mean Jaccard index of its kept set with CircuitKV's.
        later_attention: Method name -> mean share of the question's attention to the context on kept tokens.
        bridges: Per KV head, the bridge tokens, highest walk score first.
    """

    layer: int
    context_tokens: int
    question_tokens: int
    budget: int
    visits: list[float]
    near_sink_share: float
    jaccard: dict[str, float]
    later_attention: dict[str, float]
    bridges: list[list[Bridge]]


def context_view(prefill: Prefill, layer: int, context_tokens: int, seed: int) -> LayerView:
    """Return the layer as a scorer reads it under the context protocol: the first ``context_tokens`` only."""
    generator = torch.Generator(device=prefill.input_ids.device).manual_seed(seed)
    return LayerView(
        layer=layer,
        num_layers=prefill.num_layers,
        queries=prefill.queries[layer][:, :context_tokens],  # (heads, n_ctx, d)
        keys=prefill.keys(layer)[:, :context_tokens],  # (kv_heads, n_ctx, d)
        scaling=prefill.scaling,
        generator=generator,
    )


def jaccard(first: torch.Tensor, second: torch.Tensor) -> float:
    """Jaccard index |A n B| / |A u B| of two sets of positions."""
    a, b = set(first.tolist()), set(second.tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def find_bridges(scores: torch.Tensor, attention: torch.Tensor, budget: int) -> list[Bridge]:
    """Unforced tokens among the top ``budget`` by walk score that rank outside it by direct attention.

    Args:
        scores: CircuitKV scores of one KV head, shape (n,), +inf where forced.
        attention: The start query's attention, shape (n,).
    """
    free = torch.isfinite(scores).nonzero().squeeze(1)  # (f,)
    slots = min(budget, len(free))
    walk_order = free[torch.argsort(scores[free], descending=True)]
    attention_order = free[torch.argsort(attention[free], descending=True)]
    attention_rank = {int(position): rank for rank, position in enumerate(attention_order)}

    bridges = []
    for walk_rank, position in enumerate(walk_order[:slots].tolist()):
        if attention_rank[position] >= slots:
            bridges.append(Bridge(position, walk_rank, attention_rank[position], float(attention[position])))
    return bridges


def diagnose_layer(
    prefill: Prefill,
    layer: int,
    context_tokens: int,
    budget: int,
    circuit: CircuitKV | None = None,
    baselines: tuple[str, ...] = BASELINES,
    seed: int = 0,
) -> LayerDiagnostics:
    """Compute the diagnostics of one layer; the question is everything after ``context_tokens``."""
    circuit = circuit or build_method("circuitkv")
    n = prefill.num_tokens
    if not 0 < context_tokens < n:
        raise ValueError(f"context_tokens must split the {n}-token prompt, got {context_tokens}.")
    view = context_view(prefill, layer, context_tokens, seed)
    device = view.keys.device

    # Visits, per KV head, from the same walk that produces CircuitKV's scores.
    visits = torch.stack([circuit.visits(view, kv_head) for kv_head in range(view.num_kv_heads)])  # (kv, n_ctx)
    mean_visits = visits.mean(dim=0)  # (n_ctx,)
    starts = circuit.start_positions(context_tokens, device)  # (N,)
    moved = mean_visits.index_add(0, starts, torch.full(starts.shape, -1.0, dtype=mean_visits.dtype, device=device))
    span = slice(circuit.num_sinks, circuit.num_sinks + NEAR_SINK_SPAN)
    near_sink_share = float(moved[span].sum() / moved.sum()) if moved.sum() > 0 else 0.0

    # Kept sets of every method at this layer's budget.
    methods: dict[str, Method] = {circuit.name: circuit}
    methods.update({name: build_method(name) for name in baselines})
    kept = {}
    scores = {}
    for name, method in methods.items():
        view.generator.manual_seed(seed)
        scores[name] = method.score(view)  # (kv_heads, n_ctx)
        kept[name] = keep_positions(method, [scores[name]], budget)[0]  # (kv_heads, B)

    # Attention of the question's queries to the context, renormalized over the context.
    question = torch.arange(context_tokens, n, device=device)  # (q,)
    full_view = LayerView(layer, prefill.num_layers, prefill.queries[layer], prefill.keys(layer),
                          prefill.scaling, view.generator)
    later_attention = {name: 0.0 for name in methods}
    overlap = {name: 0.0 for name in baselines}
    bridges = []
    for kv_head in range(view.num_kv_heads):
        attention = full_view.attention_rows(kv_head, question)[:, :context_tokens]  # (q, n_ctx)
        attention = attention / attention.sum(dim=1, keepdim=True)
        for name in methods:
            share = attention[:, kept[name][kv_head]].sum(dim=1).mean()
            later_attention[name] += float(share) / view.num_kv_heads
        for name in baselines:
            overlap[name] += jaccard(kept[circuit.name][kv_head], kept[name][kv_head]) / view.num_kv_heads

        start = torch.tensor([context_tokens - 1], device=device)
        direct = view.attention_rows(kv_head, start)[0]  # (n_ctx,)
        free_slots = budget - circuit.num_sinks - circuit.window
        bridges.append(find_bridges(scores[circuit.name][kv_head], direct, free_slots))

    return LayerDiagnostics(
        layer=layer,
        context_tokens=context_tokens,
        question_tokens=n - context_tokens,
        budget=budget,
        visits=mean_visits.tolist(),
        near_sink_share=near_sink_share,
        jaccard=overlap,
        later_attention=later_attention,
        bridges=bridges,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.analysis.diagnostics", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--task", default="niah_single_1", help="RULER task (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=0, help="sample index (default: %(default)s)")
    parser.add_argument("--context-tokens", type=int, default=4096, help="prompt length (default: %(default)s)")
    parser.add_argument("--layers", default="0,15,29", help="comma-separated layers (default: %(default)s)")
    parser.add_argument("--budget", type=int, default=128, help="KV entries per KV head (default: %(default)s)")
    parser.add_argument("--method", default="circuitkv", help="CircuitKV variant (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data and walker seed (default: %(default)s)")
    parser.add_argument("--model", default="default", help="'default' or a local checkpoint directory")
    parser.add_argument("--essays-dir", default=None, help="directory of .txt essays for essay haystacks")
    parser.add_argument("--output", type=Path, default=Path("data/results/diagnostics/diagnostics.json"),
                        help="JSON file to write (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.benchmarks import ruler
    from pipeline.experiments.evaluation import encode_prompt
    from pipeline.methods import BudgetError, check_budget
    from pipeline.model.loading import ModelNotFoundError, load_model
    from pipeline.model.prefill import prefill

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        layers = [int(item) for item in args.layers.split(",") if item.strip()]
        circuit = build_method(args.method)
        if not isinstance(circuit, CircuitKV):
            raise ValueError(f"--method {args.method} is not a CircuitKV variant.")
        check_budget(circuit, args.budget)
        model, tokenizer, _ = load_model(args.model)
        bad = [layer for layer in layers if not 0 <= layer < model.config.num_hidden_layers]
        if bad:
            raise ValueError(f"--layers {bad}: the model has layers 0 to {model.config.num_hidden_layers - 1}.")
        samples = ruler.generate(args.task, args.sample + 1, args.context_tokens, tokenizer, args.seed,
                                 args.essays_dir)
        sample = samples[args.sample]
        prompt = encode_prompt(sample, tokenizer, model.config.max_position_embeddings, split=True)
    except (BudgetError, ModelNotFoundError, FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 2

    full = prefill(model, prompt.input_ids)
    results = []
    for layer in layers:
        logger.info("Layer %d", layer)
        results.append(asdict(diagnose_layer(full, layer, prompt.context_tokens, args.budget, circuit,
                                             seed=args.seed)))
    record = {
        "task": args.task, "sample_id": sample.sample_id, "method": circuit.name, "method_params": circuit.params(),
        "budget": args.budget, "seed": args.seed, "layers": results,
    }
    write_text_atomically(args.output, json.dumps(record, indent=1) + "\n")
    logger.info("Wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
