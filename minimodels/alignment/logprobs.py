"""Log-probabilities of completion tokens under a causal LM: what PPO, DPO and the reward model read.

For input_ids (B, T) the model's logits at position t predict token t + 1, so the log-probability of token
t is read from the logits at t - 1. The completion mask (B, T) marks the tokens whose log-probabilities
count (the completion), and leaves out the prompt and the padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minimodels.alignment.checks import check_tensor


def _check(op: str, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    check_tensor(op, "input_ids", input_ids, dim=2)
    check_tensor(op, "completion_mask", completion_mask, dim=2)
    if completion_mask.shape != input_ids.shape:
        raise ValueError(f"{op}: completion_mask {tuple(completion_mask.shape)} must match input_ids "
                         f"{tuple(input_ids.shape)}")
    if input_ids.size(1) < 2:
        raise ValueError(f"{op}: need at least 2 tokens per row (a prompt token and a completion token)")
    mask = completion_mask.bool()
    if mask[:, 0].any():
        raise ValueError(f"{op}: the first token cannot be a completion token (nothing predicts it)")
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{op}: rows {empty} have an empty completion (completion_mask all zero)")
    return mask


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, completion_mask: torch.Tensor,
                   logits: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) log p(token_t | tokens < t), zero outside the completion (and at t = 0)."""
    mask = _check("token_logprobs", input_ids, completion_mask)
    if logits is None:
        logits = model(input_ids)  # (B, T, V)
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V): predicts tokens 1..T-1
    picked = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    out = torch.zeros(input_ids.shape, dtype=picked.dtype, device=picked.device)
    out[:, 1:] = picked
    return out * mask


def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """(B,) sum of the completion tokens' log-probabilities (prompt and padding excluded)."""
    return token_logprobs(model, input_ids, completion_mask).sum(dim=1)
