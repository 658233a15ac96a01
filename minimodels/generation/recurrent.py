"""Recurrent decoding for Mamba: read the prompt once in parallel, then one constant-cost step per token.

A transformer's KV cache grows by one key and one value per layer with every token; a Mamba LM carries
a fixed-size state (`MambaState`) instead, so memory and time per new token do not depend on the length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minimodels.generation.sampling import decoding
from minimodels.models.mamba import MambaLM


def check_recurrent(op: str, model: torch.nn.Module) -> None:
    """A TypeError naming the right decoder when `model` has no prefill(ids) and step(token, state)."""
    if callable(getattr(model, "prefill", None)) and callable(getattr(model, "step", None)):
        return
    raise TypeError(
        f"{op} needs a recurrent model with prefill(ids) and step(token_ids, state), like MambaLM; "
        f"{type(model).__name__} has none: use generate_cached() (a KV cache) or generate() for it"
    )


def generate_recurrent(
    model: MambaLM, input_ids: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int,
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
    seed: int | None = None,
) -> torch.Tensor:
    """Append max_new_tokens tokens to input_ids (B, T): a parallel prefill, then `model.step` per token.

    Same arguments and result as `minimodels.generation.generate.generate` (B, T + max_new_tokens), in time
    linear in the length instead of quadratic.
    """
    settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, seed=seed,
                    check_model=check_recurrent)
    with decoding("generate_recurrent", model, input_ids, max_new_tokens, **settings) as (ids, sample):
        if max_new_tokens:
            logits, state = model.prefill(ids)
            logits = logits[:, -1]  # (B, V)
            for i in range(max_new_tokens):
                token = sample(logits)  # (B, 1)
                ids = torch.cat([ids, token], dim=1)
                if i + 1 < max_new_tokens:
                    logits = model.step(token[:, 0], state)
    return ids
