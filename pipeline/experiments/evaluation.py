"""The computation behind every cell's numbers: encode a prompt, prefill once, compress, decode and score.

Every result a cell holds is computed by the code of this module, the model
code (``pipeline.model``), the benchmark that made the sample and the
method. ``pipeline.experiments.cells`` hashes exactly those modules into the
code version of a cell's key, so a change here recomputes the cells, while a
change to scheduling, storage or logging does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.benchmarks import longbench, metrics
from pipeline.benchmarks.sample import Sample
from pipeline.experiments.schema import CellConfig, ModelInfo, SampleResult, Timing
from pipeline.methods import LayerBudgets, Method, keep_positions, ratio_budget, score_layers
from pipeline.model.prefill import (
    Prefill,
    answer_nll,
    cache_lengths,
    clone_cache,
    compress_cache,
    feed_tokens,
    greedy_decode_batch,
    prefill,
    stack_caches,
)

ANSWER_NLL_TOKENS = 64  # reference tokens scored by teacher forcing, enough for every RULER answer


@dataclass
class Cell:
    """One (protocol, method, budget) of a task, with its results as they accumulate."""

    method: Method
    config: CellConfig
    path: Path
    samples: list[SampleResult] = field(default_factory=list)

    def budget_for(self, num_tokens: int) -> int | None:
        """Entries per layer and KV head for a prompt of ``num_tokens``; None for the full cache."""
        if self.config.budget_ratio is not None:
            return ratio_budget(self.method, self.config.budget_ratio, num_tokens)
        return self.config.budget


@dataclass
class EncodedPrompt:
    """A tokenized prompt.

    Attributes:
        input_ids: Token ids, shape (1, n).
        truncated: Whether the prompt was cut in the middle to fit.
        context_tokens: Tokens before the question; None unless the split was requested.
    """

    input_ids: torch.Tensor
    truncated: bool
    context_tokens: int | None = None


@dataclass
class Variant:
    """One cell's cache for one prompt, waiting to be decoded."""

    cell: Cell
    budget: int | None
    schedule: LayerBudgets | None
    cache: object  # DynamicCache
    scoring_s: float


def encode_prompt(sample: Sample, tokenizer, max_prompt_tokens: int, split: bool = False) -> EncodedPrompt:
    """Tokenize a sample, truncating its prompt in the middle to fit ``max_prompt_tokens``.

    The budget left for the prompt text excludes the generation length and the
    chat template's own tokens. With ``split``, also find where the question
    starts: everything before it (chat header included) is context.
    """
    def render(prompt: str) -> str:
        if not sample.use_chat_template:
            return prompt + sample.answer_prefix
        messages = [{"role": "user", "content": prompt}]
        chat = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return chat + sample.answer_prefix

    overhead = len(tokenizer.encode(render(""), add_special_tokens=False))
    room = max_prompt_tokens - sample.max_new_tokens - overhead
    prompt, truncated = longbench.truncate_middle(sample.prompt, tokenizer, room)
    text = render(prompt)
    # Chat templates already hold their special tokens; plain prompts get the tokenizer's own.
    encoding = tokenizer(
        text, return_tensors="pt", add_special_tokens=not sample.use_chat_template, return_offsets_mapping=split
    )
    if not split:
        return EncodedPrompt(encoding.input_ids, truncated)

    if not sample.question or not prompt.endswith(sample.question):
        reason = "has no question after its context" if not sample.question else "lost its question to truncation"
        raise ValueError(
            f"{sample.sample_id}: the prompt {reason}, so the context protocol cannot compress the context alone; "
            "use --protocol prompt for this task."
        )
    question_start = text.rindex(sample.question)
    offsets = encoding.offset_mapping[0].tolist()  # (n, 2) character spans
    context_tokens = next(
        (index for index, (start, end) in enumerate(offsets) if start >= question_start and end > start),
        len(offsets),
    )
    return EncodedPrompt(encoding.input_ids, truncated, context_tokens)


def _stop_token_ids(model, tokenizer) -> set[int]:
    stops = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    stops.update(configured if isinstance(configured, list) else [configured])
    return {token for token in stops if token is not None}


def _model_info(model, source, device: torch.device) -> ModelInfo:
    config = model.config
    return ModelInfo(
        model_id=source.model_id,
        model_type=config.model_type,
        num_layers=config.num_hidden_layers,
        num_kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        bytes_per_element=next(model.parameters()).element_size(),
        device=device.type,
    )


def _encode_all(samples: list[Sample], cells: list[Cell], tokenizer, max_prompt_tokens: int) -> dict:
    """Tokenize every sample before any prefill, so that a prompt the grid cannot run fails early."""
    split = any(cell.config.protocol == "context" for cell in cells)
    prompts = {}
    for sample in samples:
        prompt = encode_prompt(sample, tokenizer, max_prompt_tokens, split=split)
        for cell in cells:
            tokens = prompt.context_tokens if cell.config.protocol == "context" else prompt.input_ids.shape[1]
            cell.budget_for(tokens)  # raises BudgetError for a ratio too small for this prompt
        prompts[sample.sample_id] = prompt
    return prompts


@dataclass
class PromptRun:
    """Executor of the pending cells of one protocol on one sample: one prefill, batched decodes."""

    model: object
    tokenizer: object
    stops: set[int]
    model_info: ModelInfo
    seed: int
    decode_batch: int

    def run(self, sample: Sample, prompt: EncodedPrompt, protocol: str, cells: list[Cell]) -> None:
        input_ids = prompt.input_ids
        context = input_ids if protocol == "prompt" else input_ids[:, : prompt.context_tokens]  # (1, n_ctx)
        question = input_ids[0, context.shape[1] :]  # (q,), empty for the prompt protocol
        full = prefill(self.model, context)
        variants = self._variants(full, cells)

        # Variants whose caches have equal per-layer lengths decode together; uncompressed ones share one decode.
        groups: dict[tuple, list[Variant]] = {}
        for variant in variants:
            key = ("whole",) if variant.schedule is None else tuple(cache_lengths(variant.cache))
            groups.setdefault(key, []).append(variant)
        # The uncompressed group goes first, so compressed outputs can be compared with the full cache's.
        full_tokens = None
        for key in sorted(groups, key=lambda group_key: group_key != ("whole",)):
            group = groups[key]
            batches = [group] if key == ("whole",) else [
                group[start : start + self.decode_batch] for start in range(0, len(group), self.decode_batch)
            ]
            for batch in batches:
                outputs = self._decode(sample, prompt, full, question, batch, key == ("whole",), full_tokens)
                if key == ("whole",):
                    full_tokens = outputs[0]

    def _answer_ids(self, sample: Sample) -> torch.Tensor:
        """Tokens of the reference answer whose likelihood is measured, shape (m,).

        Tasks that need every reference (string_match_all) score all of them,
        joined by ", "; the others score the first. The answer follows the
        prompt after a space and is cut to ``ANSWER_NLL_TOKENS`` tokens.
        """
        references = sample.references if sample.metric == "string_match_all" else sample.references[:1]
        text = " " + ", ".join(reference.strip() for reference in references)
        ids = self.tokenizer.encode(text, add_special_tokens=False)[:ANSWER_NLL_TOKENS]
        return torch.tensor(ids or [self.tokenizer.eos_token_id])

    def _variants(self, full: Prefill, cells: list[Cell]) -> list[Variant]:
        n = full.num_tokens
        scores: dict[tuple[str, int], tuple[list[torch.Tensor], float]] = {}
        variants = []
        for cell in cells:
            method = cell.method
            budget = cell.budget_for(n) if method.compresses else None
            if budget is None or n <= budget:
                variants.append(Variant(cell, budget, None, full.cache, 0.0))
                continue

            seed = self.seed if cell.config.method_seed is None else cell.config.method_seed
            key = (repr(method), seed)
            if key not in scores:
                started = time.perf_counter()
                layer_scores = score_layers(method, full, seed)
                scores[key] = (layer_scores, time.perf_counter() - started)
            layer_scores, scoring_s = scores[key]
            schedule = method.layer_budgets(budget, full.num_layers, n)
            cache = compress_cache(full, keep_positions(method, layer_scores, budget))
            _check_compressed(method.label, budget, n, cache_lengths(cache), schedule)
            variants.append(Variant(cell, budget, schedule, cache, scoring_s))
        return variants

    def _decode(
        self, sample, prompt, full, question, batch: list[Variant], shared: bool, full_tokens: list[int] | None
    ) -> list[list[int]]:
        """Decode one batch, record its samples, and return the generated tokens of each row.

        ``full_tokens``, the full cache's output on this prompt when it ran,
        gives each sample's agreement with it.
        """
        # Uncompressed variants all hold the full cache, so one decode serves them all.
        rows = batch[:1] if shared else batch
        cache = clone_cache(full.cache) if shared else stack_caches([variant.cache for variant in rows])
        lengths = cache_lengths(cache)  # before the question and decoding extend the cache
        n = full.num_tokens

        started = time.perf_counter()
        if len(question):
            first_logprobs = feed_tokens(self.model, cache, question, n, logprobs=True)  # (V, vocab)
        else:
            first_logprobs = full.last_logprobs.unsqueeze(0).expand(len(rows), -1)  # (V, vocab)
        first_tokens = first_logprobs.argmax(dim=-1).tolist()
        # The answer's likelihood is scored on a copy, because decoding extends the cache in place.
        nll = answer_nll(
            self.model, clone_cache(cache), first_logprobs, self._answer_ids(sample), n + len(question)
        ).tolist()
        outputs, _ = greedy_decode_batch(
            self.model, cache, first_tokens, n + len(question), sample.max_new_tokens, self.stops
        )
        decode_s = time.perf_counter() - started  # the question's forward pass included

        for index, variant in enumerate(batch):
            tokens = outputs[0 if shared else index]
            reference_tokens = tokens if shared else full_tokens
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            prediction = metrics.postprocess(sample.task, text)
            compressed = variant.schedule is not None
            variant.cell.samples.append(
                SampleResult(
                    sample_id=sample.sample_id,
                    prompt_tokens=int(prompt.input_ids.shape[1]),
                    context_tokens=n,
                    truncated=prompt.truncated,
                    budget=variant.budget,
                    compressed=compressed,
                    layer_budgets=variant.schedule.lengths if compressed else None,
                    budget_fallback=variant.schedule.fallback if compressed else None,
                    cache_lengths=lengths,
                    kv_bytes=self.model_info.kv_bytes(sum(lengths)),
                    full_kv_bytes=self.model_info.kv_bytes(n * len(lengths)),
                    length=sample.extra.get("length"),
                    generated_tokens=len(tokens),
                    agreement_tokens=None if reference_tokens is None else common_prefix(tokens, reference_tokens),
                    answer_nll=nll[0 if shared else index],
                    prediction=prediction,
                    references=list(sample.references) if sample.keep_references else None,
                    score=metrics.score(
                        sample.metric, prediction, sample.references, all_classes=sample.extra.get("all_classes")
                    ),
                    timing=Timing(
                        prefill_s=full.seconds, scoring_s=variant.scoring_s, decode_s=decode_s,
                        decode_batch=len(rows),
                    ),
                )
            )
        return outputs


def common_prefix(first: list[int], second: list[int]) -> int:
    """Return the number of leading tokens that two outputs share."""
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def _check_compressed(method: str, budget: int, n: int, lengths: list[int], schedule: LayerBudgets) -> None:
    """Fail loudly when a cache that should be compressed is not, or not to the method's schedule."""
    if lengths != schedule.lengths:
        raise RuntimeError(
            f"{method} at budget {budget} produced cache lengths {lengths}, expected the schedule {schedule.lengths}."
        )
    if sum(lengths) >= n * len(lengths):
        raise RuntimeError(
            f"{method} at budget {budget} left the {n}-token cache uncompressed; refusing to report "
            "full-cache numbers under its name."
        )
