"""The one cross-entropy of the course: predicted distributions (..., V) against target ids (...).

Every loss in minimodels goes through `token_cross_entropy`: next-token prediction of the causal LMs
(`next_token_loss`, the training loop's default), Llama's loss with the MoE auxiliary term, and the
seq2seq teacher-forcing loss (which ignores padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of logits (..., V) against targets (...), skipping targets equal to ignore_index."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits (..., V) and targets (...) must share their leading shape, got logits {tuple(logits.shape)} "
            f"and targets {tuple(targets.shape)}"
        )
    flat_logits, flat_targets = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)
    if ignore_index is None:
        return F.cross_entropy(flat_logits, flat_targets)
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore_index)


def next_token_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of model(inputs) logits (B, T, V) against targets (B, T)."""
    return token_cross_entropy(model(inputs), targets)
