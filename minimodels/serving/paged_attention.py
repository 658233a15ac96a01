"""Attention of a batch of sequences whose keys and values live in blocks of a shared pool (PagedAttention).

Kwon et al. 2023 (arXiv:2309.06180). Sequence b's token at position p has its key in slot p % block_size
of physical block block_tables[b][p // block_size] of the pool (num_blocks, block_size, n_kv_heads,
head_dim). Here the blocks are gathered with plain PyTorch indexing into a padded (B, n_kv_heads, keys,
head_dim) tensor and attended with scaled_dot_product_attention; a CUDA kernel would read the blocks in
place instead, with the same result.

The queries of a sequence are the last query_len of its context_len tokens (a prefill chunk, or one
decode token): query i sits at position context_len - query_len + i and sees keys j <= that position,
and only the last `window` of them with a sliding window (Mistral). Grouped-query attention: query head h
reads key/value head h // (n_heads / n_kv_heads).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PagedBatch:
    """Addressing of B sequences' queries and keys, built once per step and shared by every layer."""

    block_tables: torch.Tensor  # (B, max_blocks) long: physical block of each logical block (padded)
    rows: torch.Tensor  # (N,) long: sequence of each flat query
    cols: torch.Tensor  # (N,) long: index of each flat query among its sequence's queries
    mask: torch.Tensor  # (B, 1, max_q, max_blocks * block_size) bool: True where a query sees a key
    max_q: int


def paged_batch(
    block_tables: list[list[int]], context_lens: list[int], query_lens: list[int], block_size: int,
    window: int | None = None, device: torch.device | str | None = None,
) -> PagedBatch:
    """The PagedBatch of sequences b with context_lens[b] tokens, the last query_lens[b] of them queried."""
    if not len(block_tables) == len(context_lens) == len(query_lens) >= 1:
        raise ValueError(f"need one block table, context length and query length per sequence (at least one), "
                         f"got {len(block_tables)}, {len(context_lens)} and {len(query_lens)}")
    for b, (table, ctx, n_q) in enumerate(zip(block_tables, context_lens, query_lens, strict=True)):
        if not 1 <= n_q <= ctx <= len(table) * block_size:
            raise ValueError(f"sequence {b}: need 1 <= query_len ({n_q}) <= context_len ({ctx}) <= "
                             f"blocks ({len(table)}) * block_size ({block_size})")
    max_blocks = -(-max(context_lens) // block_size)
    tables = torch.tensor([t[:max_blocks] + [0] * (max_blocks - len(t[:max_blocks])) for t in block_tables],
                          dtype=torch.long, device=device)  # (B, max_blocks); padding points at block 0
    ctx = torch.tensor(context_lens, dtype=torch.long, device=device)  # (B,)
    n_q = torch.tensor(query_lens, dtype=torch.long, device=device)  # (B,)
    max_q = max(query_lens)
    rows = torch.repeat_interleave(torch.arange(len(query_lens), device=device), n_q)  # (N,)
    starts = torch.cumsum(n_q, 0) - n_q  # (B,) first flat query of each sequence
    cols = torch.arange(rows.numel(), device=device) - starts[rows]  # (N,)
    q_pos = ctx[:, None] - n_q[:, None] + torch.arange(max_q, device=device)[None, :]  # (B, max_q)
    q_pos = torch.minimum(q_pos, ctx[:, None] - 1)  # padding rows repeat the last query (never all masked)
    k_pos = torch.arange(max_blocks * block_size, device=device)  # (max_k,)
    mask = k_pos[None, None, :] <= q_pos[:, :, None]  # (B, max_q, max_k) causal; hides slots past the context
    if window is not None:
        mask &= k_pos[None, None, :] > q_pos[:, :, None] - window
    return PagedBatch(tables, rows, cols, mask[:, None], max_q)


def paged_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: PagedBatch
) -> torch.Tensor:
    """Flat queries q (N, n_heads, head_dim) of batch's sequences over the pool -> (N, n_heads, head_dim).

    k_cache, v_cache: (num_blocks, block_size, n_kv_heads, head_dim), already holding these tokens' keys.
    """
    N, H, D = q.shape
    if k_cache.shape != v_cache.shape or k_cache.dim() != 4 or k_cache.size(3) != D or H % k_cache.size(2):
        raise ValueError(f"k_cache and v_cache must both be (num_blocks, block_size, n_kv_heads, head_dim={D}) "
                         f"with n_kv_heads dividing n_heads={H}, got {tuple(k_cache.shape)}, {tuple(v_cache.shape)}")
    if batch.rows.numel() != N:
        raise ValueError(f"q has {N} queries but the batch addresses {batch.rows.numel()}")
    B, n_kv = batch.block_tables.size(0), k_cache.size(2)
    k = k_cache[batch.block_tables].flatten(1, 2).transpose(1, 2)  # (B, Hkv, max_k, D) gathered blocks
    v = v_cache[batch.block_tables].flatten(1, 2).transpose(1, 2)  # (B, Hkv, max_k, D)
    q_pad = q.new_zeros(B, batch.max_q, H, D)
    q_pad[batch.rows, batch.cols] = q  # (B, max_q, H, D)
    grouped = n_kv != H
    if grouped and q.is_cuda:  # CUDA's masked SDPA has no native GQA: repeat the kv heads
        k, v = k.repeat_interleave(H // n_kv, dim=1), v.repeat_interleave(H // n_kv, dim=1)
        grouped = False
    y = F.scaled_dot_product_attention(q_pad.transpose(1, 2), k, v, attn_mask=batch.mask,
                                       enable_gqa=grouped)  # (B, H, max_q, D)
    return y.transpose(1, 2)[batch.rows, batch.cols]  # (N, H, D)
