"""Rollouts: sample completions of prompts from a policy and pack them into one right-padded batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from minimodels.generation.cached import generate_cached


@dataclass
class Rollout:
    """input_ids (B, T) prompt + completion, right-padded with pad_id; completion_mask (B, T) marks completions."""

    input_ids: torch.Tensor
    completion_mask: torch.Tensor
    attention_mask: torch.Tensor
    prompt_lengths: list[int]
    completions: list[list[int]]


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int = 0) -> Rollout:
    """Right-pad prompt + completion rows into one batch with its masks."""
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"pack: need as many completions as prompts (>= 1), got {len(prompts)} and {len(completions)}")
    empty = [i for i, c in enumerate(completions) if not c]
    if empty:
        raise ValueError(f"pack: completions {empty} are empty")
    T = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    completion_mask = torch.zeros(len(prompts), T, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        completion_mask[i, len(p): len(p) + len(c)] = 1
        attention_mask[i, : len(p) + len(c)] = 1
    return Rollout(ids, completion_mask, attention_mask, [len(p) for p in prompts], [list(c) for c in completions])


def cut_after_stop(tokens: list[int], stop_ids: frozenset[int]) -> list[int]:
    """tokens up to and including the first one in stop_ids (all of them when none occurs)."""
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    return tokens


def _stop_set(stop_id: int | Iterable[int] | None) -> frozenset[int]:
    if stop_id is None:
        return frozenset()
    ids = [stop_id] if isinstance(stop_id, int) else list(stop_id)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TypeError(f"sample_completions: stop_id must be an int or a collection of ints, got {stop_id!r}")
    return frozenset(ids)


@torch.no_grad()
def sample_completions(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int,
                       temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                       stop_id: int | Iterable[int] | None = None, pad_id: int = 0) -> Rollout:
    """Sample one completion per prompt (with the KV cache), cut after a stop token, and pack them.

    Prompts of the same length are sampled together in one batch (no padding inside the model is needed),
    the group that starts at prompt i with the generator seeded by seed + i: the same prompts and seed give
    the same completions. stop_id: one token id or a collection of them; a completion ends after the first.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("sample_completions: need at least one prompt, each with at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"sample_completions: max_new_tokens must be >= 1, got {max_new_tokens}")
    stops = _stop_set(stop_id)
    groups: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(len(prompt), []).append(i)
    device = next(model.parameters()).device
    completions: list[list[int]] = [[] for _ in prompts]
    for rows in groups.values():
        batch = torch.tensor([prompts[i] for i in rows], device=device)  # (G, P)
        out = generate_cached(model, batch, max_new_tokens, temperature=temperature, top_k=top_k,
                              seed=seed + rows[0])  # (G, P + max_new_tokens)
        for i, row in zip(rows, out[:, batch.size(1):].tolist(), strict=True):
            completions[i] = cut_after_stop(row, stops)
    return pack(prompts, completions, pad_id)
