"""SwiGLU feed-forward (Llama, Mistral, and each Mixtral expert): down(silu(gate(x)) * up(x)).

A gated linear unit: `up(x)` carries the content, `silu(gate(x))` decides per hidden unit how much of it
passes. Three matrices instead of two, so Llama sizes the hidden width about 8/3 of the model width
(instead of 4x) to keep the parameter count of a GELU MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    """x (..., dim) -> (..., dim) through a gated hidden layer of width `hidden`; no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        if dim < 1 or hidden < 1:
            raise ValueError(f"SwiGLU needs dim >= 1 and hidden >= 1, got dim={dim}, hidden={hidden}")
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
