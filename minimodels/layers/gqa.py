"""Grouped-query attention (GQA) with RoPE, an optional sliding window and an optional KV cache.

n_heads query heads share n_kv_heads key/value heads, n_heads / n_kv_heads queries per group:
n_kv_heads = n_heads is ordinary multi-head attention, n_kv_heads = 1 is multi-query attention. Fewer
key/value heads shrink the KV cache by the same factor, which is what limits long-context decoding.
A sliding window W lets the query at position p see only keys p - W < j <= p (Mistral).

This class is the only place where the Llama family computes attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minimodels.layers.attention import attention_mask
from minimodels.layers.rope import apply_rope


class GroupedQueryAttention(nn.Module):
    """x (B, T, dim) -> (B, T, dim). q/k/v/o projections without bias, as in Llama."""

    def __init__(
        self, dim: int, n_heads: int, n_kv_heads: int | None = None, head_dim: int | None = None,
        window: int | None = None, dropout: float = 0.0, use_kernels: bool = False,
    ):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if head_dim is None:
            if dim % n_heads:
                raise ValueError(f"dim={dim} must be divisible by n_heads={n_heads} (or give head_dim)")
            head_dim = dim // n_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if use_kernels and dropout > 0:
            raise ValueError(f"dropout={dropout} cannot be used with use_kernels=True: the Triton attention kernel "
                             f"has no dropout; set dropout=0 or use_kernels=False")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.window = window
        self.dropout = dropout
        self.use_kernels = use_kernels  # kernels.flash_attention (Triton) instead of SDPA
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None, layer_idx: int = 0
    ) -> torch.Tensor:
        """cos, sin (T, head_dim): RoPE tables at the absolute positions of x's tokens (offset by the cache).

        cache: a kv_cache.KVCache / RollingKVCache (or None); this layer stores its keys under `layer_idx`.
        """
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # rotated at absolute positions, then cached
        if cache is not None:
            k, v = cache.update(layer_idx, k, v)  # (B, Hkv, Tk, D): earlier positions, then these T
        if self.use_kernels:
            import kernels  # imported here: only the kernel path needs triton

            # same semantics: queries are the last T of the keys, causal, window of the W latest positions
            y = kernels.flash_attention(q, k, v, causal=True, window=self.window)  # (B, H, T, D), GQA native
            return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
        mask_args = self._mask_args(T, k.size(2), x.device)
        grouped = self.n_kv_heads != self.n_heads  # query head h reads kv head h // (n_heads / n_kv_heads)
        if grouped and x.is_cuda and "attn_mask" in mask_args:
            # CUDA's kernel for arbitrary masks has no native GQA: repeat the kv heads instead
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, H, Tk, D)
            grouped = False
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, enable_gqa=grouped, **mask_args
        )  # (B, H, T, D)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    def _mask_args(self, t_q: int, t_k: int, device: torch.device) -> dict:
        """SDPA mask arguments for t_q queries that are the last t_q of t_k consecutive key positions."""
        window_cuts = self.window is not None and t_k > self.window
        if not window_cuts and t_q == t_k:
            return {"is_causal": t_q > 1}  # plain causal square
        if not window_cuts and t_q == 1:
            return {}  # one query after all its keys: sees every key
        return {"attn_mask": attention_mask(t_q, t_k, causal=True, window=self.window, device=device)}
