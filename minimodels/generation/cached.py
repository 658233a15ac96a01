"""Cached incremental decoding: prefill the prompt once, then feed one new token per step.

generate.generate re-runs the whole sequence for every new token: O(T^2) work per token in attention and
O(T) in the MLPs. With a KV cache each step runs the model on one token and attends to the cached keys,
so a step costs O(T) in attention and O(1) in the MLPs. Same tokens as generate.generate (same choice
rule, `generate.next_token`).
"""

from __future__ import annotations

import torch

from minimodels.generation.generate import next_token
from minimodels.generation.kv_cache import KVCache, new_cache, prefill


@torch.no_grad()
def generate_cached(
    model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int | None = None,
    cache: str | KVCache = "static", prefill_chunk: int | None = None,
) -> torch.Tensor:
    """Append max_new_tokens tokens to input_ids (B, T) with a KV cache; returns (B, T + max_new_tokens).

    cache: "static" (a KVCache of exactly T + max_new_tokens positions), "rolling" (a RollingKVCache of the
    model's sliding window: constant memory), or an empty cache object to use.
    prefill_chunk: feed the prompt in chunks of this many tokens (default: all at once for a static cache,
    the window for a rolling one). The model must accept `model(ids, cache=...)` (the course Llama does).
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if input_ids.dim() != 2 or input_ids.size(1) < 1:
        raise ValueError(f"input_ids must be (batch, time), time >= 1, got shape {tuple(input_ids.shape)}")
    if max_new_tokens == 0:
        return input_ids
    B, T = input_ids.shape
    if isinstance(cache, str):
        cache = new_cache(model, B, cache, max_len=T + max_new_tokens)
    elif cache.length != 0:
        raise ValueError(f"generate_cached needs an empty cache, got one holding {cache.length} tokens")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    logits = prefill(model, input_ids, cache, prefill_chunk)[:, -1, :]  # (B, V)
    new_tokens = []
    for step in range(max_new_tokens):
        token = next_token(logits, temperature, top_k, top_p, greedy, generator)  # (B, 1)
        new_tokens.append(token)
        if step + 1 < max_new_tokens:  # the last token needs no forward
            logits = model(token, cache=cache)[:, -1, :]
    model.train(was_training)
    return torch.cat([input_ids, *new_tokens], dim=1)
