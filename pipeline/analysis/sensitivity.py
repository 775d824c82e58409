"""Where CircuitKV finds the needle, and how its settings change that: the data of two figures.

Each RULER prompt is prefilled once and compressed as a whole (the prompt
protocol), so the walk starts at the last prompt token, which follows the
question. The answer tokens are the tokens of the prompt that spell the
sample's reference answers.

- bridges, for the first prompt and one layer: the last query's direct
  attention and CircuitKV's score per position, both averaged over KV heads.
  Also the sets kept at the budget by CircuitKV and by ranking the same
  positions by direct attention, the bridges (kept by the walk only, see
  ``find_bridges``) and the share of the answer tokens that each set keeps.
- sensitivity, over all prompts, layers and KV heads: for each temperature T,
  walker count N and step limit S, with the other two at CircuitKV's
  defaults, the share of the answer tokens kept and the Jaccard index of the
  kept set with that of the default configuration computed with exact
  expected visits.

``python -m pipeline.analysis.sensitivity`` writes both as JSON under
``data/results/diagnostics/`` and skips the work when the files already
hold the same configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.analysis.diagnostics import find_bridges, jaccard
from pipeline.atomic import write_text_atomically
from pipeline.methods.base import FORCED, LayerView, block_rows, top_positions
from pipeline.methods.circuitkv import CircuitKV
from pipeline.methods.walkers import normalize_visits
from pipeline.model.prefill import Prefill

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_TASK = "niah_multikey_1"
DEFAULT_OUTPUT_DIR = Path("data/results/diagnostics")
BRIDGES_FILE = "bridges.json"
SENSITIVITY_FILE = "sensitivity.json"

# The swept values of each CircuitKV parameter; None as max_steps means no step limit.
GRIDS: dict[str, tuple] = {
    "temperature": (0.25, 0.5, 1.0, 2.0, 4.0),
    "num_walkers": (64, 256, 1024, 4096),
    "max_steps": (1, 2, 5, 10, 20, None),
}


@dataclass(frozen=True)
class PromptTokens:
    """One encoded prompt and where its answer is written in it.

    Attributes:
        sample_id: The RULER sample id.
        input_ids: Prompt token ids, shape (1, n).
        answers: Sorted positions of the tokens that spell the reference answers.
    """

    sample_id: str
    input_ids: torch.Tensor
    answers: tuple[int, ...]


# Answer tokens.


def answer_positions(text: str, offsets: Sequence[tuple[int, int]], references: Sequence[str]) -> list[int]:
    """Return the sorted token positions whose characters overlap an occurrence of any reference.

    Every occurrence counts, so a reference written twice in the prompt marks
    both places. Tokens with an empty span (special tokens) never count.

    Args:
        text: The encoded text.
        offsets: Per token, its (start, end) character span in ``text``.
        references: Reference answer strings.

    Raises:
        ValueError: A reference is empty or does not occur in ``text``.
    """
    spans = []
    for reference in references:
        if not reference:
            raise ValueError("An empty reference answer has no tokens to locate.")
        start = text.find(reference)
        if start < 0:
            raise ValueError(f"Reference answer {reference!r} does not occur in the prompt.")
        while start >= 0:
            spans.append((start, start + len(reference)))
            start = text.find(reference, start + 1)

    positions = set()
    for index, (token_start, token_end) in enumerate(offsets):
        if token_end <= token_start:
            continue
        if any(token_start < span_end and token_end > span_start for span_start, span_end in spans):
            positions.add(index)
    return sorted(positions)


def render_text(sample, tokenizer) -> str:
    """Return the text that ``encode_prompt`` tokenizes for an untruncated sample: chat template and answer prefix."""
    if not sample.use_chat_template:
        return sample.prompt + sample.answer_prefix
    messages = [{"role": "user", "content": sample.prompt}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + sample.answer_prefix


def encode_with_answers(sample, tokenizer, max_prompt_tokens: int) -> PromptTokens:
    """Encode a sample as the experiments do and locate its answer tokens with the tokenizer's offset mapping.

    Raises:
        ValueError: The prompt had to be truncated, the tokenizer gives no
            offsets, or a reference does not occur in the prompt.
    """
    from pipeline.experiments.evaluation import encode_prompt

    encoded = encode_prompt(sample, tokenizer, max_prompt_tokens)
    if encoded.truncated:
        raise ValueError(
            f"{sample.sample_id}: the prompt was truncated to fit {max_prompt_tokens} tokens, so its answer "
            "may be gone; use a shorter context."
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Locating answer tokens needs a fast tokenizer, which returns character offsets.")
    text = render_text(sample, tokenizer)
    encoding = tokenizer(text, add_special_tokens=not sample.use_chat_template, return_offsets_mapping=True)
    if encoding.input_ids != encoded.input_ids[0].tolist():
        raise RuntimeError(
            f"{sample.sample_id}: re-encoding the prompt with offsets gave other tokens than encode_prompt; "
            "render_text no longer matches how the runner renders prompts."
        )
    try:
        answers = answer_positions(text, encoding.offset_mapping, sample.references)
    except ValueError as error:
        raise ValueError(f"{sample.sample_id}: {error}") from None
    return PromptTokens(sample.sample_id, encoded.input_ids, tuple(answers))


# Attention and kept sets of one layer.


@dataclass
class StoredAttentionView(LayerView):
    """A layer view whose attention rows come from precomputed matrices.

    Each sweep setting reads the same rows, so computing the layer's
    attention once saves recomputing it for every setting.

    Attributes:
        matrices: Causal attention averaged over each KV head's query heads,
            shape (num_kv_heads, n, n), zero above the diagonal.
    """

    matrices: torch.Tensor

    def attention_rows(self, kv_head: int, positions: torch.Tensor) -> torch.Tensor:
        width = int(positions.max()) + 1
        return self.matrices[kv_head, positions, :width]  # a copy, so callers may edit it in place


def stored_view(prefill: Prefill, layer: int, seed: int) -> StoredAttentionView:
    """Compute the attention matrices of one layer, in blocks of rows, and wrap them in a view."""
    generator = torch.Generator(device=prefill.input_ids.device).manual_seed(seed)
    view = LayerView(layer, prefill.num_layers, prefill.queries[layer], prefill.keys(layer), prefill.scaling, generator)
    n = view.num_tokens
    matrices = torch.zeros(view.num_kv_heads, n, n, device=view.keys.device)  # (kv_heads, n, n)
    block = block_rows(n, view.group_size)
    for kv_head in range(view.num_kv_heads):
        for low in range(0, n, block):
            positions = torch.arange(low, min(low + block, n), device=view.keys.device)
            rows = view.attention_rows(kv_head, positions)  # (m, max(positions) + 1)
            matrices[kv_head, low : low + len(positions), : rows.shape[1]] = rows
    return StoredAttentionView(
        layer, prefill.num_layers, view.queries, view.keys, view.scaling, generator, matrices=matrices
    )


def direct_attention(view: StoredAttentionView) -> torch.Tensor:
    """Attention of the last position to every position, per KV head, shape (num_kv_heads, n)."""
    return view.matrices[:, -1, :].clone()


def forced_mask(circuit: CircuitKV, num_tokens: int) -> torch.Tensor:
    """Positions that CircuitKV always keeps (sinks and window), shape (num_tokens,)."""
    mask = torch.zeros(num_tokens, dtype=torch.bool)
    mask[: circuit.num_sinks] = True
    mask[max(num_tokens - circuit.window, 0) :] = True
    return mask


def attention_kept(attention: torch.Tensor, circuit: CircuitKV, budget: int) -> torch.Tensor:
    """Keep CircuitKV's forced positions and fill the rest of the budget by direct attention.

    Args:
        attention: Direct attention per KV head, shape (num_kv_heads, n).

    Returns:
        Sorted kept positions, shape (num_kv_heads, budget).
    """
    scores = attention.clone()
    scores[:, forced_mask(circuit, attention.shape[1]).to(scores.device)] = FORCED
    return top_positions(scores, budget)


def walk_kept(circuit: CircuitKV, view: LayerView, budget: int, seed: int) -> torch.Tensor:
    """Score the layer with a freshly seeded generator and keep the top ``budget``, shape (num_kv_heads, budget)."""
    view.generator.manual_seed(seed)
    return circuit.keep(circuit.score(view), budget)


def answer_shares(kept: torch.Tensor, answers: Sequence[int]) -> list[float]:
    """Share of the answer positions in each KV head's kept set; one value per KV head."""
    if not answers:
        raise ValueError("No answer positions: the share of answer tokens kept is undefined.")
    answer_tensor = torch.tensor(list(answers), device=kept.device)
    return [float(torch.isin(answer_tensor, row).float().mean()) for row in kept]


def _compact(values: torch.Tensor) -> list[float]:
    """Round to six significant digits for JSON, which keeps a 4096-entry curve small."""
    return [float(f"{value:.6g}") for value in values.tolist()]


# The bridges figure.


def bridge_record(
    view: StoredAttentionView, circuit: CircuitKV, budget: int, answers: Sequence[int], seed: int
) -> dict:
    """Compute the bridges figure's data for one layer.

    The walk runs once per KV head, seeded as ``walk_kept`` seeds it, so the
    scores here are the ones that CircuitKV keeps by. The stored
    ``circuitkv_score`` is the normalized visit count before the sinks and the
    window are forced, so it stays finite everywhere.
    """
    n = view.num_tokens
    view.generator.manual_seed(seed)
    visits = torch.stack([circuit.visits(view, kv_head) for kv_head in range(view.num_kv_heads)])  # (kv, n)
    plotted = (normalize_visits(visits) if circuit.normalize else visits).float()  # (kv, n)
    scores = plotted.clone()
    scores[:, forced_mask(circuit, n).to(scores.device)] = FORCED

    kept_walk = circuit.keep(scores, budget)  # (kv, B)
    attention = direct_attention(view)  # (kv, n)
    kept_attention = attention_kept(attention, circuit, budget)  # (kv, B)
    free_slots = budget - circuit.num_sinks - circuit.window
    bridges = [find_bridges(scores[kv_head], attention[kv_head], free_slots) for kv_head in range(view.num_kv_heads)]

    walk_shares = answer_shares(kept_walk, answers)
    attention_shares = answer_shares(kept_attention, answers)
    counts = [len(head) for head in bridges]
    return {
        "layer": view.layer,
        "num_tokens": n,
        "num_kv_heads": view.num_kv_heads,
        "budget": budget,
        "forced": {"sinks": circuit.num_sinks, "window": circuit.window},
        "direct_attention": _compact(attention.mean(dim=0)),
        "circuitkv_score": _compact(plotted.mean(dim=0)),
        "kept": {"circuitkv": kept_walk.tolist(), "attention": kept_attention.tolist()},
        "bridges": [
            [{"position": b.position, "walk_rank": b.walk_rank, "attention_rank": b.attention_rank,
              "attention": b.attention} for b in head]
            for head in bridges
        ],
        "answer_positions": list(answers),
        "summary": {
            "bridges": {"per_kv_head": counts, "mean": sum(counts) / len(counts)},
            "answer_tokens": len(answers),
            "answer_kept": {
                "circuitkv": sum(walk_shares) / len(walk_shares),
                "attention": sum(attention_shares) / len(attention_shares),
                "circuitkv_per_kv_head": walk_shares,
                "attention_per_kv_head": attention_shares,
            },
        },
    }


# The sensitivity figure.


def setting_label(parameter: str, value) -> str:
    """Name one grid point, e.g. ``temperature=0.25`` or ``max_steps=inf``."""
    return f"{parameter}={'inf' if value is None else value}"


def sweep_methods(grids: dict[str, tuple]) -> dict[str, CircuitKV]:
    """Build one CircuitKV per distinct grid point; the default configuration appears once, as ``default``."""
    defaults = CircuitKV()
    methods = {"default": defaults}
    for parameter, values in grids.items():
        for value in values:
            if value == getattr(defaults, parameter):
                continue
            methods[setting_label(parameter, value)] = CircuitKV(**{parameter: value})
    return methods


def layer_sensitivity(
    view: StoredAttentionView,
    methods: dict[str, CircuitKV],
    budget: int,
    answers: Sequence[int],
    seed: int,
    on_setting: Callable[[], None] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Compare every method's kept set of one layer with the exact default's.

    Returns:
        Per method name, plus ``reference`` (the exact default, compared with
        itself) and ``attention`` (direct attention ranking), the answer share
        and the Jaccard index with the reference, one value per KV head each.
    """
    reference = CircuitKV(exact=True)
    reference_kept = walk_kept(reference, view, budget, seed)  # (kv, B)
    if on_setting:
        on_setting()
    kept_sets = {"reference": reference_kept}
    for name, method in methods.items():
        kept_sets[name] = walk_kept(method, view, budget, seed)
        if on_setting:
            on_setting()
    kept_sets["attention"] = attention_kept(direct_attention(view), reference, budget)

    return {
        name: {
            "answer_kept": answer_shares(kept, answers),
            "jaccard": [jaccard(row, reference_row) for row, reference_row in zip(kept, reference_kept)],
        }
        for name, kept in kept_sets.items()
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarize_sensitivity(per_prompt: list[dict[str, dict[str, float]]], grids: dict[str, tuple]) -> dict:
    """Arrange per-prompt means by swept parameter; the default configuration fills its slot in every grid.

    Args:
        per_prompt: Per prompt, per setting name, the answer share and Jaccard
            index averaged over layers and KV heads.
    """
    defaults = CircuitKV()

    def entry(name: str) -> dict:
        shares = [prompt[name]["answer_kept"] for prompt in per_prompt]
        indexes = [prompt[name]["jaccard"] for prompt in per_prompt]
        return {
            "answer_kept": _mean(shares), "jaccard": _mean(indexes),
            "answer_kept_per_prompt": shares, "jaccard_per_prompt": indexes,
        }

    sweeps = {}
    for parameter, values in grids.items():
        sweeps[parameter] = []
        for value in values:
            name = "default" if value == getattr(defaults, parameter) else setting_label(parameter, value)
            sweeps[parameter].append({"value": value, **entry(name)})
    return {
        "defaults": {parameter: getattr(defaults, parameter) for parameter in grids},
        "sweeps": sweeps,
        "reference": entry("reference"),
        "attention": entry("attention"),
    }


def analyse(
    model,
    prompts: Sequence[PromptTokens],
    budget: int,
    bridge_layer: int,
    seed: int = 0,
    grids: dict[str, tuple] = GRIDS,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Prefill each prompt once and compute the bridges record (first prompt) and the sensitivity record.

    Returns:
        The bridges record (see ``bridge_record``) and the sensitivity record
        (see ``summarize_sensitivity``, plus the layers, the answer-token counts
        and the wall time), both without the run configuration.
    """
    from tqdm import tqdm

    from pipeline.model.prefill import prefill

    if not prompts:
        raise ValueError("The analysis needs at least one prompt.")
    methods = sweep_methods(grids)
    num_layers = model.config.num_hidden_layers
    if not 0 <= bridge_layer < num_layers:
        raise ValueError(f"Layer {bridge_layer} is outside the model's layers 0 to {num_layers - 1}.")
    default = methods["default"]
    start = time.perf_counter()

    bridges = None
    per_prompt = []
    bar = tqdm(total=len(prompts) * num_layers * (len(methods) + 1), desc="CircuitKV settings", unit="setting",
               disable=not progress)
    for index, prompt in enumerate(prompts):
        full = prefill(model, prompt.input_ids)
        logger.info("%s: %d tokens, %d answer tokens", prompt.sample_id, full.num_tokens, len(prompt.answers))
        totals: dict[str, dict[str, float]] = {}
        for layer in range(num_layers):
            view = stored_view(full, layer, seed)
            if index == 0 and layer == bridge_layer:
                bridges = bridge_record(view, default, budget, prompt.answers, seed)
            for name, measures in layer_sensitivity(view, methods, budget, prompt.answers, seed, bar.update).items():
                slot = totals.setdefault(name, {"answer_kept": 0.0, "jaccard": 0.0})
                for measure, values in measures.items():
                    slot[measure] += _mean(values) / num_layers
            del view
        per_prompt.append(totals)
        del full
    bar.close()

    seconds = time.perf_counter() - start
    sensitivity = {
        **summarize_sensitivity(per_prompt, grids),
        "layers": list(range(num_layers)),
        "answer_tokens": [len(prompt.answers) for prompt in prompts],
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
    }
    bridges["sample_id"] = prompts[0].sample_id
    return bridges, sensitivity


# Files and the command line.


def run_config(args: argparse.Namespace, model_id: str, essays_digest: str | None) -> dict:
    """The settings a rerun must share with the stored files to skip the work."""
    return {
        "format": FORMAT_VERSION,
        "task": args.task,
        # ruler.generate names its samples {task}-s{seed}-{index}; analyse checks that the names agree.
        "sample_ids": [f"{args.task}-s{args.seed}-{index}" for index in range(args.prompts)],
        "context_tokens": args.context_tokens,
        "budget": args.budget,
        "bridge_layer": "middle" if args.layer is None else args.layer,
        "sensitivity_layers": "all",
        "seed": args.seed,
        "model_id": model_id,
        "essays_sha256": essays_digest,
        "protocol": "prompt",
        "method_defaults": CircuitKV().params(),
        "reference": "circuitkv with exact=True and the default parameters",
        "grids": {parameter: list(values) for parameter, values in GRIDS.items()},
    }


def is_up_to_date(output_dir: Path, config: dict) -> bool:
    """Check whether both files exist and were written with ``config``; an unreadable file counts as stale."""
    for name in (BRIDGES_FILE, SENSITIVITY_FILE):
        path = output_dir / name
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("%s is unreadable (%s); recomputing it", path, error)
            return False
        if not isinstance(stored, dict) or stored.get("config") != config:
            return False
    return True


def write_records(output_dir: Path, config: dict, bridges: dict, sensitivity: dict) -> tuple[Path, Path]:
    """Write both records with their configuration, each atomically."""
    paths = (output_dir / BRIDGES_FILE, output_dir / SENSITIVITY_FILE)
    for path, record in zip(paths, (bridges, sensitivity)):
        write_text_atomically(path, json.dumps({"config": config, **record}, indent=1) + "\n")
        logger.info("Wrote %s", path)
    return paths


def essays_sha256(task: str, essays_dir: str | None) -> str | None:
    """Return a digest of the essay haystack that ``task`` reads, or None for tasks without essays."""
    from pipeline.benchmarks import ruler
    from pipeline.benchmarks.haystack import read_essays

    if ruler.TASKS[task].haystack != "essay":
        return None
    return hashlib.sha256(read_essays(essays_dir).encode("utf-8")).hexdigest()


def build_parser() -> argparse.ArgumentParser:
    from pipeline.benchmarks.haystack import ESSAYS_DIR_ENV

    parser = argparse.ArgumentParser(
        prog="python -m pipeline.analysis.sensitivity", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--task", default=DEFAULT_TASK, help="RULER task (default: %(default)s)")
    parser.add_argument("--prompts", type=int, default=3, help="number of RULER samples (default: %(default)s)")
    parser.add_argument("--context-tokens", type=int, default=4096,
                        help="prompt length in tokens (default: %(default)s)")
    parser.add_argument("--budget", type=int, default=128,
                        help="KV entries kept per layer and KV head (default: %(default)s)")
    parser.add_argument("--layer", type=int, default=None,
                        help="layer of the bridges figure (default: the middle layer, num_layers // 2)")
    parser.add_argument("--seed", type=int, default=0, help="data and walker seed (default: %(default)s)")
    parser.add_argument("--model", default="default", help="'default' or a local checkpoint directory")
    parser.add_argument("--essays-dir", default=os.environ.get(ESSAYS_DIR_ENV),
                        help=f"directory of .txt essays for essay haystacks (default: ${ESSAYS_DIR_ENV})")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                        help=f"directory of {BRIDGES_FILE} and {SENSITIVITY_FILE} (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="recompute even when the files are up to date")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise ValueError naming the option and value of the first invalid option."""
    from pipeline.benchmarks import ruler
    from pipeline.methods import check_budget

    if args.task not in ruler.TASKS:
        raise ValueError(f"--task {args.task}: unknown RULER task; choose one of {', '.join(sorted(ruler.TASKS))}.")
    if args.prompts < 1:
        raise ValueError(f"--prompts {args.prompts}: must be at least 1.")
    if args.context_tokens < 1:
        raise ValueError(f"--context-tokens {args.context_tokens}: must be at least 1.")
    if args.layer is not None and args.layer < 0:
        raise ValueError(f"--layer {args.layer}: must be a layer index, 0 or more.")
    try:
        check_budget(CircuitKV(), args.budget)
    except ValueError as error:
        raise ValueError(f"--budget {args.budget}: {error}") from None


def _model_error(model: str, error: Exception) -> str:
    """Prefix a model error with the option, unless its message already names it."""
    message = str(error)
    return message if message.startswith("--model") else f"--model {model}: {message}"


def main(argv: list[str] | None = None) -> int:
    from pipeline.benchmarks import ruler
    from pipeline.model.loading import ModelNotFoundError, load_model, resolve_model

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_args(args)
        model_id = resolve_model(args.model).model_id
        digest = essays_sha256(args.task, args.essays_dir)
    except ModelNotFoundError as error:
        logger.error("%s", _model_error(args.model, error))
        return 2
    except FileNotFoundError as error:
        logger.error("--essays-dir %s: %s", args.essays_dir, error)
        return 2
    except ValueError as error:
        logger.error("%s", error)
        return 2

    config = run_config(args, model_id, digest)
    if not args.force and is_up_to_date(args.output_dir, config):
        logger.info("%s and %s in %s are up to date", BRIDGES_FILE, SENSITIVITY_FILE, args.output_dir)
        return 0

    try:
        model, tokenizer, _ = load_model(args.model)
        num_layers = model.config.num_hidden_layers
        layer = num_layers // 2 if args.layer is None else args.layer
        if layer >= num_layers:
            raise ValueError(f"--layer {layer}: the model has layers 0 to {num_layers - 1}.")
        samples = ruler.generate(args.task, args.prompts, args.context_tokens, tokenizer, args.seed, args.essays_dir)
        prompts = [encode_with_answers(sample, tokenizer, model.config.max_position_embeddings) for sample in samples]
    except ModelNotFoundError as error:
        logger.error("%s", _model_error(args.model, error))
        return 2
    except ValueError as error:
        logger.error("%s", error)
        return 2
    if [prompt.sample_id for prompt in prompts] != config["sample_ids"]:
        raise RuntimeError(
            f"RULER named the samples {[prompt.sample_id for prompt in prompts]}, not {config['sample_ids']}; "
            "update run_config to ruler.generate's naming."
        )

    bridges, sensitivity = analyse(model, prompts, args.budget, layer, args.seed, progress=not args.no_progress)
    write_records(args.output_dir, config, bridges, sensitivity)
    logger.info(
        "Done in %.0f s: %.1f bridges per KV head at layer %d; answer tokens kept %.1f%% (CircuitKV) and %.1f%% "
        "(direct attention)", sensitivity["seconds"], bridges["summary"]["bridges"]["mean"], layer,
        100 * bridges["summary"]["answer_kept"]["circuitkv"], 100 * bridges["summary"]["answer_kept"]["attention"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
