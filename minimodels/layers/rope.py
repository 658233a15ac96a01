"""Rotary position embedding (RoPE): encode a position by rotating pairs of query/key coordinates.

Coordinate pair i of a head vector at position p turns by the angle p * theta^(-2i / D). A rotation
preserves lengths, and the dot product of a query rotated at m with a key rotated at n depends only on
m - n: attention sees relative positions, with nothing added to the token embeddings.

Layout (the one Hugging Face's Llama uses): coordinate i pairs with coordinate i + D/2, the first half
with the second half. `rotate_half` maps (x1, x2) to (-x2, x1), so x * cos + rotate_half(x) * sin rotates
each pair.
"""

from __future__ import annotations

import torch
from torch import nn


def rope_inv_freq(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Angular speed of each coordinate pair: theta^(-2i / D) for i < D/2, float32 (D/2,)."""
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"RoPE rotates coordinate pairs, so head_dim must be even and >= 2, got {head_dim}")
    if theta <= 0:
        raise ValueError(f"RoPE theta must be > 0, got {theta}")
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the last dimension, split in halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., T, D) by the angles of its T positions; cos and sin are (T, D)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """cos/sin tables of RoPE, computed once and grown on demand (no parameters, nothing saved).

    `rope(seq_len, start)` returns the (seq_len, head_dim) float32 tables of positions start, ...,
    start + seq_len - 1: `start` is the number of tokens already in a KV cache when decoding.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.inv_freq = rope_inv_freq(head_dim, theta)  # validates head_dim and theta
        self.head_dim = head_dim
        self.theta = theta
        # plain attributes, not buffers: they must stay float32 when the model is cast to half precision
        self._cos = torch.empty(0, head_dim)
        self._sin = torch.empty(0, head_dim)

    def _grow(self, length: int, device: torch.device) -> None:
        length = max(64, 1 << (length - 1).bit_length())  # next power of two: few regrowths
        positions = torch.arange(length, device=device, dtype=torch.float)
        freqs = positions[:, None] * self.inv_freq.to(device)[None, :]  # (L, D/2) angle of each pair
        angles = torch.cat((freqs, freqs), dim=-1)  # (L, D): pair i uses columns i and i + D/2
        self._cos, self._sin = angles.cos(), angles.sin()

    def forward(
        self, seq_len: int, start: int = 0, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if seq_len < 1 or start < 0:
            raise ValueError(f"RoPE needs seq_len >= 1 and start >= 0, got seq_len={seq_len}, start={start}")
        device = torch.device(device) if device is not None else self._cos.device
        if start + seq_len > self._cos.size(0) or self._cos.device != device:
            self._grow(max(start + seq_len, self._cos.size(0)), device)
        return self._cos[start:start + seq_len], self._sin[start:start + seq_len]

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}"
