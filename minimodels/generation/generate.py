"""Decoding: greedy, or sampled with temperature, top-k and top-p (nucleus). Seeded through a Generator.

Works with any course model `model(ids) -> logits`; a model with a `block_size` sees only that many most
recent tokens.
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top_k largest and outside the smallest set whose mass reaches top_p.

    logits (B, V). top_p keeps the most probable tokens whose cumulative probability first reaches top_p
    (at least one token is always kept).
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = mass_before >= top_p  # the first token never drops
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
    greedy: bool = False, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from last-position logits (B, V); returns (B, 1)."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    if generator is not None and generator.device != probs.device:
        probs_for_sampling = probs.cpu()
        return torch.multinomial(probs_for_sampling, 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int | None = None,
) -> torch.Tensor:
    """Append max_new_tokens tokens to input_ids (B, T) by running the full model at each step.

    Returns (B, T + max_new_tokens). `seed` makes sampling reproducible without touching the global RNG.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if input_ids.dim() != 2 or input_ids.size(1) < 1:
        raise ValueError(f"input_ids must be (batch, time) with time >= 1, got shape {tuple(input_ids.shape)}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    block_size = getattr(model, "block_size", None)
    was_training = model.training
    model.eval()
    ids = input_ids
    for _ in range(max_new_tokens):
        context = ids if block_size is None else ids[:, -block_size:]
        logits = model(context)[:, -1, :]  # (B, V)
        ids = torch.cat([ids, next_token(logits, temperature, top_k, top_p, greedy, generator)], dim=1)
    model.train(was_training)
    return ids
