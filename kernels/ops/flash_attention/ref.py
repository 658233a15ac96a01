"""FlashAttention reference and argument checks in plain PyTorch (importable without triton).

The semantics (bottom-right aligned queries, causal, sliding window, GQA, empty rows) are spelled out in
kernels/ops/flash_attention/triton.py.
"""

from __future__ import annotations

import math
import numbers

import torch

from kernels.masks import attention_mask

HEAD_DIMS = (16, 32, 64, 128)  # head dims the Triton kernels take (powers of two that tl.dot tiles)


def flash_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    window: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Reference: explicit mask and softmax in float32, k and v repeated over each query-head group."""
    scale = check_arguments("flash_attention_ref", q, k, v, causal, window, scale)
    B, Hq, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    k_full = k.float().repeat_interleave(Hq // Hkv, dim=1)  # (B, Hq, S, D)
    v_full = v.float().repeat_interleave(Hq // Hkv, dim=1)  # (B, Hq, S, D)
    scores = q.float() @ k_full.transpose(-1, -2) * scale  # (B, Hq, T, S)
    keep = attention_mask(T, S, causal, window, q.device)  # (T, S)
    has_key = keep.any(-1, keepdim=True)  # (T, 1); False only for rows before the first key
    # empty rows get finite scores (then zeroed by the mask), so that neither softmax nor its grad is NaN
    scores = scores.masked_fill(~keep, float("-inf")).masked_fill(~has_key, 0.0)
    probs = torch.softmax(scores, dim=-1) * keep
    return (probs @ v_full).to(q.dtype)  # (B, Hq, T, D)


def check_arguments(op: str, q, k, v, causal: bool, window, scale) -> float:
    """Shape, mask and scale checks shared by the kernel and the reference; returns the scale to use.

    scale: None (1 / sqrt(D)) or a finite real number > 0.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            layout = "(B, Hq, T, D)" if name == "q" else "(B, Hkv, S, D)"
            raise ValueError(f"{op}: {name} must have 4 dims {layout}, got shape {tuple(t.shape)}")
    if k.shape != v.shape:
        raise ValueError(
            f"{op}: k and v must have the same shape, got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"{op}: q and k must have the same batch size, got {q.shape[0]} and {k.shape[0]}")
    if q.shape[3] != k.shape[3]:
        raise ValueError(f"{op}: q and k must have the same head dim D, got {q.shape[3]} and {k.shape[3]}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(
            f"{op}: the number of query heads ({q.shape[1]}) must be divisible by the number of kv heads "
            f"({k.shape[1]})"
        )
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"{op}: need at least one query and one key, got T={q.shape[2]} and S={k.shape[2]}")
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(f"{op}: window must be an int or None, got {window!r}")
        if window < 1:
            raise ValueError(f"{op}: window must be >= 1, got {window}")
        if not causal:
            raise ValueError(f"{op}: window={window} requires causal=True (a sliding window looks back only)")
    if scale is None:
        return 1.0 / math.sqrt(q.shape[3])
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"{op}: scale must be None or a real number, got {type(scale).__name__} {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{op}: scale must be finite and > 0 (None means 1 / sqrt(D)), got {scale}")
    return float(scale)
