"""The course Llama's forward over one step's tokens of many sequences, with keys and values in a block pool.

`Llama.forward` puts a whole batch at one start position (cache.length). Sequences in a continuous batch
sit at different positions and do different things (a prompt chunk here, one decode token there), so the
runner calls the model's submodules itself, vLLM style: the step's tokens of all sequences are flattened
into one stream (N,) with a position per token; each layer rotates queries and keys at those positions,
writes the new keys and values into the pool through a slot mapping (slot = block * block_size + offset),
then attends per sequence through its block table (`paged_attention`). The projections and MLPs run once
on the whole stream. Logits are computed only at the last token of each sequence that samples.
"""

from __future__ import annotations

import torch

from minimodels.layers.rope import apply_rope
from minimodels.models.llama import Llama
from minimodels.serving.paged_attention import GatherBuffer, PagedBatch, paged_attention, paged_batch
from minimodels.serving.scheduler import ScheduledChunk


class ModelRunner:
    """Holds the KV block pool of `model` and runs scheduled chunks through it."""

    def __init__(self, model: Llama, num_blocks: int, block_size: int):
        if not isinstance(model, Llama):
            raise TypeError(f"the serving engine runs the course Llama family (minimodels.Llama), "
                            f"got {type(model).__name__}")
        c = model.config
        param = next(model.parameters())
        self.model, self.block_size = model, block_size
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.window = c.sliding_window
        self.device = param.device
        # (layer, k/v, block, slot in block, kv head, head dim): block b holds tokens b*bs .. b*bs + bs - 1
        self.kv = torch.zeros(c.n_layers, 2, num_blocks, block_size, c.n_kv_heads, c.head_dim,
                              dtype=param.dtype, device=param.device)
        self.buffer = GatherBuffer()
        self.decode_group_size = 16

    @property
    def kv_bytes_per_block(self) -> int:
        return self.kv[:, :, 0].numel() * self.kv.element_size()

    def copy_blocks(self, pairs: list[tuple[int, int]]) -> None:
        """Copy-on-write: block dst becomes a copy of block src in every layer."""
        if pairs:
            src, dst = (torch.tensor(ids, device=self.device) for ids in zip(*pairs, strict=True))
            self.kv[:, :, dst] = self.kv[:, :, src]

    def _layout(self, chunks: list[ScheduledChunk]):
        """Flat ids, positions, slots, and the paged batches: 1-token chunks sorted by length in groups of at
        most decode_group_size (padding each to its longest costs little), each longer chunk alone."""
        singles = sorted((c for c in chunks if c.num_tokens == 1), key=lambda c: c.request.num_computed_tokens)
        g = self.decode_group_size
        groups = [singles[i:i + g] for i in range(0, len(singles), g)] + [[c] for c in chunks if c.num_tokens > 1]
        order = [c for group in groups for c in group]
        bs = self.block_size
        ids, positions, slots, last = [], [], [], {}
        for c in order:
            r, start = c.request, c.request.num_computed_tokens
            span = range(start, start + c.num_tokens)
            ids += r.token_ids[start:start + c.num_tokens]
            positions += span
            slots += [r.block_table[p // bs] * bs + p % bs for p in span]
            last[id(c)] = len(ids) - 1
        batches: list[tuple[int, int, PagedBatch]] = []
        begin = 0
        for group in groups:
            n = sum(c.num_tokens for c in group)
            batch = paged_batch([c.request.block_table for c in group],
                                [c.request.num_computed_tokens + c.num_tokens for c in group],
                                [c.num_tokens for c in group], bs, self.window, self.device)
            batches.append((begin, begin + n, batch))
            begin += n
        logit_rows = [last[id(c)] for c in chunks if c.samples]
        tensor = lambda x: torch.tensor(x, dtype=torch.long, device=self.device)  # noqa: E731
        return tensor(ids), tensor(positions), tensor(slots), batches, tensor(logit_rows)

    @torch.no_grad()
    def execute(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """Run the chunks (before their requests' num_computed_tokens advance); logits (S, vocab) of the S
        chunks that sample, in chunk order."""
        m = self.model
        ids, positions, slots, batches, logit_rows = self._layout(chunks)
        N, H, Hkv, D = ids.numel(), self.n_heads, self.n_kv_heads, self.head_dim
        cos, sin = m.rope(int(positions.max()) + 1, 0, device=self.device)  # (max_pos + 1, D)
        cos, sin = cos[positions][:, None], sin[positions][:, None]  # (N, 1, D) per-token angles
        x = m.embed(ids)  # (N, dim)
        for i, layer in enumerate(m.layers):
            attn = layer.attn
            h = layer.attn_norm(x)
            q = apply_rope(attn.q_proj(h).view(N, H, D), cos, sin)  # (N, H, D)
            k = apply_rope(attn.k_proj(h).view(N, Hkv, D), cos, sin)  # (N, Hkv, D)
            v = attn.v_proj(h).view(N, Hkv, D)
            k_cache, v_cache = self.kv[i, 0], self.kv[i, 1]  # (num_blocks, block_size, Hkv, D)
            k_cache.view(-1, Hkv, D)[slots] = k  # the new keys into their slots, before attending
            v_cache.view(-1, Hkv, D)[slots] = v
            y = torch.cat([paged_attention(q[a:b], k_cache, v_cache, batch, self.buffer)
                           for a, b, batch in batches])  # (N, H, D)
            x = x + attn.o_proj(y.reshape(N, H * D))
            x = x + layer.mlp(layer.mlp_norm(x)[None])[0]  # (N, dim); [None]: a mixture of experts wants (B, T, C)
        return m.lm_head(m.norm(x[logit_rows]))  # (S, vocab)
