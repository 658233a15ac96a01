"""RMSNorm reference in plain PyTorch (importable without triton); the convention is in triton.py."""

from __future__ import annotations

import math
import numbers

import torch


def check_eps(op: str, eps: float) -> float:
    """eps must be a finite real number > 0 (it keeps an all-zero row finite); returned as a float."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{op}: eps must be a real number, got {type(eps).__name__} {eps!r}")
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"{op}: eps must be finite and > 0, got {eps}")
    return float(eps)


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Reference RMSNorm, in the order of Hugging Face's LlamaRMSNorm (see kernels/ops/rms_norm/triton.py).

    x (..., N), weight (N,) -> (..., N) in torch.promote_types(x.dtype, weight.dtype).
    """
    eps = check_eps("rms_norm_ref", eps)
    x32 = x.to(torch.float32)
    rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * (x32 * rstd).to(x.dtype)
