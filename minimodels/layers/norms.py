"""Normalization layers: LayerNorm (GPT-2, BERT) and RMSNorm (Llama, Mistral, Mixtral).

LayerNorm centers and scales each vector: (x - mean) / std * weight + bias.
RMSNorm skips the centering and the bias: x / sqrt(mean(x^2) + eps) * weight. It is cheaper and works as
well in practice. Llama computes it in float32 and casts back before the weight, which matters in half
precision; `RMSNorm` does exactly the same so that its output equals Hugging Face's LlamaRMSNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kernels.ops.rms_norm.ref import rms_norm_ref


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight (+ bias) over the last dimension."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        if dim < 1 or eps <= 0:
            raise ValueError(f"LayerNorm needs dim >= 1 and eps > 0, got dim={dim}, eps={eps}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight on the last dimension: normalized in float32, cast back, scaled.

    The formula is `kernels.rms_norm_ref` (the reference of the Triton kernel), so both paths share it.
    """

    def __init__(self, dim: int, eps: float = 1e-6, use_kernels: bool = False):
        super().__init__()
        if dim < 1 or eps <= 0:
            raise ValueError(f"RMSNorm needs dim >= 1 and eps > 0, got dim={dim}, eps={eps}")
        self.eps = eps
        self.use_kernels = use_kernels  # the same formula as a fused Triton kernel (kernels.rms_norm)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_kernels:
            import kernels  # imported here: only the kernel path needs triton

            return kernels.rms_norm(x, self.weight, self.eps)
        return rms_norm_ref(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
