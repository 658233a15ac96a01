"""Rollouts: sample completions of prompts from a policy and pack them into one right-padded batch."""

from __future__ import annotations

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


@torch.no_grad()
def sample_completions(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int,
                       temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                       stop_id: int | None = None, pad_id: int = 0) -> Rollout:
    """Sample one completion per prompt (with the KV cache), cut after stop_id, and pack them."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("sample_completions: need at least one prompt, each with at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"sample_completions: max_new_tokens must be >= 1, got {max_new_tokens}")
    completions = []
    for i, prompt in enumerate(prompts):
        out = generate_cached(model, torch.tensor([prompt]), max_new_tokens, temperature=temperature, top_k=top_k,
                              seed=seed + i)
        new = out[0, len(prompt):].tolist()
        if stop_id is not None and stop_id in new:
            new = new[: new.index(stop_id) + 1]
        completions.append(new)
    return pack(prompts, completions, pad_id)
