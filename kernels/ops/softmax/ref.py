"""Softmax reference: plain PyTorch, importable without triton."""

from __future__ import annotations

import torch


def softmax_ref(x: torch.Tensor) -> torch.Tensor:
    """Reference: softmax over the last dimension, computed in float32, returned in x's dtype."""
    return torch.softmax(x.float(), dim=-1).to(x.dtype)
