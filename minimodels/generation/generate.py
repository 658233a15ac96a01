"""Full-recompute generation: run the whole sequence through the model for every new token.

Works with any course model `model(ids) -> logits`; a model with a `block_size` sees only that many most
recent tokens. The choice rule (greedy, temperature, top-k, top-p) is `sampling.next_token`, shared with the
cached and recurrent decoders, which give the same tokens faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minimodels.generation.sampling import decoding, filter_logits, next_token

__all__ = ["filter_logits", "generate", "next_token"]  # the sampling functions stay importable from here


def generate(
    model: torch.nn.Module, input_ids: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int,
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
    seed: int | None = None,
) -> torch.Tensor:
    """Append max_new_tokens tokens to input_ids (B, T) by running the full model at each step.

    Returns (B, T + max_new_tokens). `seed` makes sampling reproducible without touching the global RNG.
    Prompts of a batch share one length (a list of unequal prompts is refused: there is no padding).
    """
    settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, seed=seed)
    with decoding("generate", model, input_ids, max_new_tokens, **settings) as (ids, sample):
        block_size = getattr(model, "block_size", None)
        for _ in range(max_new_tokens):
            context = ids if block_size is None else ids[:, -block_size:]
            logits = model(context)[:, -1, :]  # (B, V)
            ids = torch.cat([ids, sample(logits)], dim=1)
    return ids
