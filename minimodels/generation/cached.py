"""Cached incremental decoding: prefill the prompt once, then feed one new token per step.

generate.generate re-runs the whole sequence for every new token: O(T^2) work per token in attention and
O(T) in the MLPs. With a KV cache each step runs the model on one token and attends to the cached keys,
so a step costs O(T) in attention and O(1) in the MLPs. Same tokens as generate.generate (same choice
rule, `sampling.next_token`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from minimodels.generation.kv_cache import KVCache, new_cache, prefill
from minimodels.generation.sampling import decoding


def check_takes_cache(op: str, model: torch.nn.Module) -> None:
    """A TypeError naming the right decoder when `model` cannot read and fill a KV cache."""
    forward = getattr(model, "forward", None)
    if forward is not None and "cache" in inspect.signature(forward).parameters:
        return
    other = "generate_recurrent()" if callable(getattr(model, "step", None)) else "generate()"
    raise TypeError(
        f"{op} needs a model that reads and fills a KV cache, model(ids, cache=...), like the course Llama; "
        f"{type(model).__name__} takes no cache: use {other} for it"
    )


def generate_cached(
    model: torch.nn.Module, input_ids: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int,
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
    seed: int | None = None, cache: str | KVCache = "static", prefill_chunk: int | None = None,
) -> torch.Tensor:
    """Append max_new_tokens tokens to input_ids (B, T) with a KV cache; returns (B, T + max_new_tokens).

    cache: "static" (a KVCache of exactly T + max_new_tokens positions), "rolling" (a RollingKVCache of the
    model's sliding window: constant memory), or an empty cache object to use.
    prefill_chunk: feed the prompt in chunks of this many tokens (default: all at once for a static cache,
    the window for a rolling one). The model must accept `model(ids, cache=...)` (the course Llama does).
    """
    settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, seed=seed,
                    check_model=check_takes_cache)
    with decoding("generate_cached", model, input_ids, max_new_tokens, **settings) as (ids, sample):
        if max_new_tokens == 0:
            return ids
        B, T = ids.shape
        if isinstance(cache, str):
            cache = new_cache(model, B, cache, max_len=T + max_new_tokens)
        elif cache.length != 0:
            raise ValueError(f"generate_cached needs an empty cache, got one holding {cache.length} tokens")
        logits = prefill(model, ids, cache, prefill_chunk)[:, -1, :]  # (B, V)
        new_tokens = []
        for step in range(max_new_tokens):
            token = sample(logits)  # (B, 1)
            new_tokens.append(token)
            if step + 1 < max_new_tokens:  # the last token needs no forward
                logits = model(token, cache=cache)[:, -1, :]
    return torch.cat([ids, *new_tokens], dim=1)
