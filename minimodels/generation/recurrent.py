"""Recurrent decoding for Mamba: read the prompt once in parallel, then one constant-cost step per token.

A transformer's KV cache grows by one key and one value per layer with every token; a Mamba LM carries
a fixed-size state (`MambaState`) instead, so memory and time per new token do not depend on the length.
"""

from __future__ import annotations

import torch

from minimodels.generation.generate import next_token
from minimodels.models.mamba import MambaLM


@torch.no_grad()
def generate_recurrent(
    model: MambaLM, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int | None = None,
) -> torch.Tensor:
    """Append max_new_tokens tokens to input_ids (B, T): a parallel prefill, then `model.step` per token.

    Same arguments and result as `minimodels.generation.generate.generate` (B, T + max_new_tokens), in time linear
    in the length instead of quadratic.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if input_ids.dim() != 2 or input_ids.size(1) < 1:
        raise ValueError(f"input_ids must be (batch, time) with time >= 1, got shape {tuple(input_ids.shape)}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    ids = input_ids
    if max_new_tokens:
        logits, state = model.prefill(input_ids)
        logits = logits[:, -1]  # (B, V)
        for i in range(max_new_tokens):
            token = next_token(logits, temperature, top_k, top_p, greedy, generator)  # (B, 1)
            ids = torch.cat([ids, token], dim=1)
            if i + 1 < max_new_tokens:
                logits = model.step(token[:, 0], state)
    model.train(was_training)
    return ids
