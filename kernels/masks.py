"""Attention masks as boolean tensors, shared by the kernels' references and the course's layers (no triton)."""

from __future__ import annotations

import torch


def attention_mask(
    t_q: int, t_k: int | None = None, causal: bool = True, window: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean mask (t_q, t_k), True where a query may attend to a key.

    Queries are the last t_q positions of the t_k keys (so t_q < t_k is a decode or a chunk after a cache).
    causal: query at position p sees keys j <= p. window=W (needs causal) keeps p - W < j <= p: the W most
    recent positions, itself included.
    """
    t_k = t_q if t_k is None else t_k
    if t_q < 1 or t_k < 1:
        raise ValueError(f"attention_mask needs t_q >= 1 and t_k >= 1, got t_q={t_q}, t_k={t_k}")
    if window is not None and (not causal or window < 1):
        raise ValueError(f"window must be an int >= 1 used with causal=True, got window={window}, causal={causal}")
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]  # (t_q, 1) absolute positions
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, t_k)
    mask = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    if causal:
        mask &= k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask
