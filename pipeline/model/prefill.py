"""Prefill a prompt once, capture what scoring needs, and decode from any cache.

Every method and budget of one prompt derives its compressed cache from a
single full-attention prefill. During that prefill an attention function
registered with transformers records each layer's queries after RoPE; the keys
after RoPE are already in the KV cache. Decoding then continues greedily from
a (possibly compressed) cache, with new tokens at positions n, n+1, ... of the
original prompt, whatever the cache length.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

logger = logging.getLogger(__name__)

CAPTURE_ATTENTION = "kvcapture_sdpa"


class _QueryRecorder:
    """Per-layer query store that the capture attention writes into while active."""

    def __init__(self) -> None:
        self.active = False
        self.queries: dict[int, torch.Tensor] = {}
        self.scaling: float | None = None


_RECORDER = _QueryRecorder()


def _capture_sdpa(module, query, key, value, attention_mask, **kwargs):
    """SDPA attention that stores post-RoPE queries during a prefill and masks by shape.

    The pipeline never pads, so the causal mask follows from the shapes alone:
    query i of q new tokens attends to the layer's first S - q + i keys. Deriving it
    per layer, instead of using the model-wide mask built from layer 0's
    length, lets layers hold different numbers of entries (PyramidKV).
    """
    if _RECORDER.active:
        # query: (1, num_heads, n, head_dim) -> (num_heads, n, head_dim)
        _RECORDER.queries[module.layer_idx] = query[0].detach()
        _RECORDER.scaling = float(kwargs.get("scaling") or module.scaling)

    num_queries, num_keys = query.shape[2], key.shape[2]
    mask = None  # one query attends to every key, and q == S is plain causal attention
    if 1 < num_queries < num_keys:
        offset = num_keys - num_queries
        mask = torch.ones(num_queries, num_keys, dtype=torch.bool, device=query.device).tril(offset)  # (q, S)
    return sdpa_attention_forward(module, query, key, value, mask, **kwargs)


AttentionInterface.register(CAPTURE_ATTENTION, _capture_sdpa)
AttentionMaskInterface.register(CAPTURE_ATTENTION, sdpa_mask)


@dataclass
class Prefill:
    """The full-attention prefill of one prompt.

    Attributes:
        input_ids: Prompt token ids, shape (1, n).
        cache: Full KV cache; layer l contains keys and values of shape
            (1, num_kv_heads, n, head_dim). Never mutated: decode from a copy.
        queries: Per layer, post-RoPE queries of shape (num_heads, n, head_dim).
        scaling: Attention logit scale (1/sqrt(head_dim) for the supported families).
        first_token: Greedy next token from the full-attention logits of the last position.
        last_logprobs: Log-probabilities of the next token at the last position, shape (vocab,).
        seconds: Wall time of the prefill forward pass.
    """

    input_ids: torch.Tensor
    cache: DynamicCache
    queries: list[torch.Tensor]
    scaling: float
    first_token: int
    seconds: float
    last_logprobs: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def num_layers(self) -> int:
        return len(self.queries)

    def keys(self, layer: int) -> torch.Tensor:
        """Post-RoPE keys of one layer, shape (num_kv_heads, n, head_dim)."""
        return self.cache.layers[layer].keys[0]

    def values(self, layer: int) -> torch.Tensor:
        """Values of one layer, shape (num_kv_heads, n, head_dim)."""
        return self.cache.layers[layer].values[0]


def use_capture_attention(model) -> None:
    """Switch ``model`` to the SDPA attention that can record queries."""
    model.config._attn_implementation = CAPTURE_ATTENTION
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = CAPTURE_ATTENTION


@torch.inference_mode()
def prefill(model, input_ids: torch.Tensor) -> Prefill:
    """Run one full-attention forward pass over the prompt and capture queries.

    Logits are computed for the last position only, because full-prompt logits
    would add about a fifth to the cost of a 4k-token prefill of a small model.
    """
    if model.config._attn_implementation != CAPTURE_ATTENTION:
        use_capture_attention(model)
    input_ids = input_ids.to(model.device)
    cache = DynamicCache()

    _RECORDER.queries = {}
    _RECORDER.active = True
    start = time.perf_counter()
    try:
        output = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    finally:
        _RECORDER.active = False
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    num_layers = model.config.num_hidden_layers
    missing = [layer for layer in range(num_layers) if layer not in _RECORDER.queries]
    if missing:
        raise RuntimeError(
            f"Query capture missed layers {missing}: this model's attention does not go through "
            "transformers' attention interface, so it cannot be scored."
        )
    queries = [_RECORDER.queries[layer] for layer in range(num_layers)]
    _RECORDER.queries = {}

    last_logprobs = output.logits[0, -1].float().log_softmax(dim=-1)  # (vocab,)
    first_token = int(last_logprobs.argmax())
    return Prefill(input_ids, output.past_key_values, queries, _RECORDER.scaling, first_token, seconds, last_logprobs)


def clone_cache(cache: DynamicCache) -> DynamicCache:
    """Copy a cache so that decoding from the copy leaves the original intact."""
    copy = DynamicCache()
    for layer_idx, layer in enumerate(cache.layers):
        copy.update(layer.keys.clone(), layer.values.clone(), layer_idx)
    return copy


def compress_cache(source: Prefill, kept: list[torch.Tensor]) -> DynamicCache:
    """Build a cache that holds only the kept positions of each layer and KV head.

    Args:
        source: The prefill whose full cache is pruned.
        kept: Per layer, sorted kept positions of shape (num_kv_heads, budget_l).
    """
    cache = DynamicCache()
    for layer_idx, positions in enumerate(kept):
        keys = source.keys(layer_idx)  # (kv_heads, n, head_dim)
        values = source.values(layer_idx)
        index = positions.to(keys.device).unsqueeze(-1).expand(-1, -1, keys.shape[-1])  # (kv_heads, B, head_dim)
        cache.update(
            keys.gather(1, index).unsqueeze(0),  # (1, kv_heads, B, head_dim)
            values.gather(1, index).unsqueeze(0),
            layer_idx,
        )
    return cache


def cache_lengths(cache: DynamicCache) -> list[int]:
    """Number of KV entries held by each layer of ``cache``."""
    return [int(layer.keys.shape[-2]) for layer in cache.layers]


def stack_caches(caches: list[DynamicCache]) -> DynamicCache:
    """Stack caches whose layers have equal lengths into one cache with a batch row per cache."""
    lengths = {tuple(cache_lengths(cache)) for cache in caches}
    if len(lengths) != 1:
        raise ValueError(f"Only caches with equal per-layer lengths can share a batch, got {sorted(lengths)}.")
    stacked = DynamicCache()
    for layer_idx in range(len(caches[0].layers)):
        stacked.update(
            torch.cat([cache.layers[layer_idx].keys for cache in caches]),  # (V, kv_heads, B_l, head_dim)
            torch.cat([cache.layers[layer_idx].values for cache in caches]),
            layer_idx,
        )
    return stacked


@torch.inference_mode()
def feed_tokens(
    model, cache: DynamicCache, token_ids: torch.Tensor, start_position: int, logprobs: bool = False
) -> torch.Tensor:
    """Append ``token_ids`` to every batch row of ``cache`` at positions ``start_position``, ...

    This is how the context protocol feeds its question through a compressed
    cache: the question's tokens take the positions that follow the context.

    Args:
        token_ids: Tokens to feed, shape (q,), the same for every batch row.

    Returns:
        Greedy next tokens after the last fed token, shape (V,), or with
        ``logprobs`` their log-probabilities, shape (V, vocab).
    """
    batch = cache.layers[0].keys.shape[0]
    count = int(token_ids.shape[0])
    device = model.device
    output = model(
        input_ids=token_ids.to(device).expand(batch, -1),  # (V, q)
        position_ids=torch.arange(start_position, start_position + count, device=device).expand(batch, -1),
        cache_position=torch.arange(cache.get_seq_length(), cache.get_seq_length() + count, device=device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    if logprobs:
        return output.logits[:, -1].float().log_softmax(dim=-1)  # (V, vocab)
    return output.logits[:, -1].argmax(dim=-1)  # (V,)


@torch.inference_mode()
def answer_nll(
    model, cache: DynamicCache, first_logprobs: torch.Tensor, answer_ids: torch.Tensor, start_position: int
) -> torch.Tensor:
    """Return the mean negative log-likelihood per token of a reference answer after each cache row.

    Teacher forcing: the answer's first token is scored by ``first_logprobs``
    (the distribution after the prompt), and the rest by feeding the answer
    through the cache at positions ``start_position``, ... The cache is
    extended in place.

    Args:
        first_logprobs: Next-token log-probabilities after the prompt, shape (V, vocab).
        answer_ids: Reference answer tokens, shape (m,), m >= 1.

    Returns:
        Mean NLL per answer token, shape (V,).
    """
    batch = first_logprobs.shape[0]
    device = first_logprobs.device
    answer_ids = answer_ids.to(device)
    total = -first_logprobs[:, answer_ids[0]].double()  # (V,)
    count = int(answer_ids.shape[0]) - 1
    if count > 0:
        length = cache.get_seq_length()
        output = model(
            input_ids=answer_ids[:-1].expand(batch, -1),  # (V, m - 1)
            position_ids=torch.arange(start_position, start_position + count, device=device).expand(batch, -1),
            cache_position=torch.arange(length, length + count, device=device),
            past_key_values=cache,
            use_cache=True,
        )
        logprobs = output.logits.float().log_softmax(dim=-1)  # (V, m - 1, vocab)
        targets = answer_ids[1:].expand(batch, -1).unsqueeze(-1)  # (V, m - 1, 1)
        total -= logprobs.gather(-1, targets).squeeze(-1).double().sum(dim=-1)
    return (total / (count + 1)).float()


@torch.inference_mode()
def greedy_decode_batch(
    model,
    cache: DynamicCache,
    first_tokens: list[int],
    prompt_length: int,
    max_new_tokens: int,
    stop_token_ids: set[int],
) -> tuple[list[list[int]], float]:
    """Generate greedily for every batch row of ``cache`` until each row stops.

    Row v starts from ``first_tokens[v]``; the token generated at step t is fed
    at position ``prompt_length + t``, so RoPE positions continue the original
    prompt even when the cache contains fewer entries than the prompt had tokens.
    Rows that have stopped keep stepping with their last token, and their
    output is cut at the stop. The cache is extended in place.

    Returns:
        Per row, the generated token ids (stop token excluded), and the wall time.
    """
    start = time.perf_counter()
    device = model.device
    outputs: list[list[int]] = [[] for _ in first_tokens]
    running = [True] * len(first_tokens)
    tokens = list(first_tokens)

    for step in range(max_new_tokens):
        for row, token in enumerate(tokens):
            if running[row] and token in stop_token_ids:
                running[row] = False
            if running[row]:
                outputs[row].append(token)
        if not any(running) or step == max_new_tokens - 1:
            break

        cache_length = cache.get_seq_length()
        output = model(
            input_ids=torch.tensor(tokens, device=device).unsqueeze(1),  # (V, 1)
            position_ids=torch.full((len(tokens), 1), prompt_length + step, device=device),
            cache_position=torch.tensor([cache_length], device=device),
            past_key_values=cache,
            use_cache=True,
        )
        tokens = output.logits[:, -1].argmax(dim=-1).tolist()

    if device.type == "cuda":
        torch.cuda.synchronize()
    return outputs, time.perf_counter() - start


def greedy_decode(
    model,
    cache: DynamicCache,
    first_token: int,
    prompt_length: int,
    max_new_tokens: int,
    stop_token_ids: set[int],
) -> tuple[list[int], float]:
    """Generate greedily from a single cache; see ``greedy_decode_batch``."""
    outputs, seconds = greedy_decode_batch(model, cache, [first_token], prompt_length, max_new_tokens, stop_token_ids)
    return outputs[0], seconds
