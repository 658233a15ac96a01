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

from dataclasses import dataclass, field

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
    _bias: dict = field(default_factory=dict, repr=False)  # (n_group, dtype) -> additive mask, see `bias`

    def bias(self, n_group: int, dtype: torch.dtype) -> torch.Tensor:
        """The mask as 0 / -inf, repeated for the n_group query heads of a kv head: (B, 1, n_group * max_q, keys)."""
        key = (n_group, dtype)
        if key not in self._bias:
            B, _, max_q, max_k = self.mask.shape
            bias = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device).masked_fill(~self.mask,
                                                                                                  float("-inf"))
            self._bias[key] = bias.expand(B, n_group, max_q, max_k).reshape(B, 1, n_group * max_q, max_k)
        return self._bias[key]


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


class GatherBuffer:
    """Memory reused for the gathered blocks of every layer and step (on a CPU, allocating it anew costs
    more than the copy)."""

    def __init__(self):
        self.k = self.v = None

    def get(self, n_blocks: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (n_blocks, *like.shape[1:])
        if self.k is None or self.k.size(0) < n_blocks or self.k.dtype != like.dtype or self.k.device != like.device:
            self.k = torch.empty((max(n_blocks, 2 * (0 if self.k is None else self.k.size(0))), *shape[1:]),
                                 dtype=like.dtype, device=like.device)
            self.v = torch.empty_like(self.k)
        return self.k[:n_blocks], self.v[:n_blocks]


def paged_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: PagedBatch,
    buffer: GatherBuffer | None = None,
) -> torch.Tensor:
    """Flat queries q (N, n_heads, head_dim) of batch's sequences over the pool -> (N, n_heads, head_dim).

    k_cache, v_cache: (num_blocks, block_size, n_kv_heads, head_dim), already holding these tokens' keys.
    buffer: memory to gather into (reused across calls); None allocates.
    """
    N, H, D = q.shape
    if k_cache.shape != v_cache.shape or k_cache.dim() != 4 or k_cache.size(3) != D or H % k_cache.size(2):
        raise ValueError(f"k_cache and v_cache must both be (num_blocks, block_size, n_kv_heads, head_dim={D}) "
                         f"with n_kv_heads dividing n_heads={H}, got {tuple(k_cache.shape)}, {tuple(v_cache.shape)}")
    if batch.rows.numel() != N:
        raise ValueError(f"q has {N} queries but the batch addresses {batch.rows.numel()}")
    (B, n_blocks), n_kv = batch.block_tables.shape, k_cache.size(2)
    G, max_q, bs = H // n_kv, batch.max_q, k_cache.size(1)
    ids = batch.block_tables.reshape(-1)  # (B * max_blocks,)
    k_out, v_out = (buffer or GatherBuffer()).get(ids.numel(), k_cache)
    torch.index_select(k_cache, 0, ids, out=k_out)  # (B * max_blocks, block_size, Hkv, D)
    torch.index_select(v_cache, 0, ids, out=v_out)
    k = k_out.view(B, n_blocks * bs, n_kv, D).transpose(1, 2)  # (B, Hkv, max_k, D)
    v = v_out.view(B, n_blocks * bs, n_kv, D).transpose(1, 2)
    q_pad = q.new_zeros(B, max_q, H, D)
    q_pad[batch.rows, batch.cols] = q  # (B, max_q, H, D)
    # grouped-query attention as plain attention: the G query heads of kv head j are G more queries of it
    q_grouped = q_pad.view(B, max_q, n_kv, G, D).permute(0, 2, 3, 1, 4).reshape(B, n_kv, G * max_q, D)
    y = F.scaled_dot_product_attention(q_grouped, k, v, attn_mask=batch.bias(G, q.dtype))  # (B, Hkv, G*max_q, D)
    y = y.view(B, n_kv, G, max_q, D).permute(0, 3, 1, 2, 4).reshape(B, max_q, H, D)  # head h = j * G + g
    return y[batch.rows, batch.cols]  # (N, H, D)
