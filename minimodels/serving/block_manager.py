"""The KV cache as fixed-size blocks: a free list, reference counts, prefix caching and copy-on-write.

PagedAttention (Kwon et al. 2023, arXiv:2309.06180) stores each sequence's keys and values in blocks of
`block_size` token slots, anywhere in one pool, addressed through the sequence's block table (logical
block i -> physical block). A sequence holds only the blocks its tokens fill, so the only waste is the
unfilled end of its last block, instead of a whole preallocated maximum length.

Prefix caching: a full block is keyed by a hash chained over the previous block's hash and its own token
ids, so equal keys mean equal prefixes. A new request walks its prompt block by block and reuses every
block found (checking the tokens on a hit), taking a reference instead of recomputing it. A block whose
reference count drops to 0 goes back to the free list but keeps its contents and its key, so it can still
be hit until it is handed out again (the free list is least-recently-freed first: eviction is LRU).

Copy-on-write: a block shared by several requests (reference count > 1), or standing for a prefix in the
cache, is never written; a request that must write into one gets a private copy first (the engine copies
the pool rows named in the returned (source, destination) pairs before the forward). This happens when a
prompt is entirely cached: its last token is computed again, for its logits, into the last shared block.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from minimodels.serving.request import Request

ROOT_HASH = 0x5EED  # the "previous block hash" of a sequence's first block


def chain_hash(parent_hash: int, token_ids: tuple[int, ...]) -> int:
    """Key of a full block: depends on every token before it (through parent_hash) and its own tokens."""
    return hash((parent_hash, token_ids))


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    block_hash: int | None = None  # set while the block is registered in the prefix cache
    token_ids: tuple[int, ...] = ()  # the tokens of a registered block, checked on a hit


class BlockManager:
    """num_blocks blocks of block_size token slots; allocation, sharing and freeing for requests."""

    def __init__(self, num_blocks: int, block_size: int = 16, enable_prefix_caching: bool = True):
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BlockManager.{name} must be a positive int, got {value!r}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))  # LRU first
        self.cached: dict[int, int] = {}  # block hash -> block id (prefix cache)

    @property
    def num_free_blocks(self) -> int:
        """Blocks no request holds (some may still hold cached prefixes: they are evictable)."""
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # ---- prefix cache -------------------------------------------------------------------------------
    def block_hashes(self, token_ids: list[int], start: int = 0, parent: int = ROOT_HASH) -> list[int]:
        """Chained hashes of the full blocks of token_ids from block index `start` (parent: hash before it)."""
        bs = self.block_size
        hashes = []
        for i in range(start, len(token_ids) // bs):
            parent = chain_hash(parent, tuple(token_ids[i * bs:(i + 1) * bs]))
            hashes.append(parent)
        return hashes

    def find_cached_prefix(self, request: Request) -> list[int]:
        """Block ids holding the longest cached prefix of the request's full blocks (no reference taken)."""
        if not self.enable_prefix_caching:
            return []
        bs, found = self.block_size, []
        hashes = self.block_hashes(request.token_ids)
        for i, h in enumerate(hashes):
            block_id = self.cached.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tuple(request.token_ids[i * bs:(i + 1) * bs]):
                break  # a miss (or a hash collision caught by the token check) ends the shared prefix
            found.append(block_id)
        return found

    def register_full_blocks(self, request: Request) -> None:
        """Enter the request's newly filled and computed blocks into the prefix cache."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        n_full = request.num_computed_tokens // bs
        done = len(request.block_hashes)
        if n_full <= done:
            return
        parent = request.block_hashes[-1] if done else ROOT_HASH
        new = self.block_hashes(request.token_ids[:n_full * bs], start=done, parent=parent)
        for i, h in enumerate(new, start=done):
            request.block_hashes.append(h)
            block = self.blocks[request.block_table[i]]
            if h not in self.cached and block.block_hash is None:  # the first copy of a prefix is the cached one
                self.cached[h] = block.block_id
                block.block_hash, block.token_ids = h, tuple(request.token_ids[i * bs:(i + 1) * bs])

    def _uncache(self, block: Block) -> None:
        if block.block_hash is not None:
            del self.cached[block.block_hash]
            block.block_hash, block.token_ids = None, ()

    # ---- allocation ---------------------------------------------------------------------------------
    def _take_free(self) -> Block:
        """Hand out the least recently freed block, evicting the prefix it cached."""
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        self._uncache(block)
        block.ref_count = 1
        return block

    def _reference(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]  # a cached block revived from the free list
        block.ref_count += 1

    def allocate_slots(
        self, request: Request, num_new_tokens: int, cached_blocks: list[int] | None = None
    ) -> list[tuple[int, int]] | None:
        """Make the request's block table cover num_computed_tokens + num_new_tokens slots.

        cached_blocks (on admission only, when the table is empty): prefix blocks to share. Returns the
        copy-on-write pairs (source block, destination block) to copy before the forward, or None, with
        nothing changed, when there are not enough free blocks.
        """
        if num_new_tokens < 1:
            raise ValueError(f"num_new_tokens must be >= 1, got {num_new_tokens}")
        cached_blocks = cached_blocks or []
        if cached_blocks and request.block_table:
            raise ValueError("cached_blocks can only be given to a request that holds no blocks yet")
        table = request.block_table + cached_blocks  # the table after sharing, before new blocks
        first, end = request.num_computed_tokens, request.num_computed_tokens + num_new_tokens
        if first > len(table) * self.block_size:
            raise ValueError(f"request {request.request_id} has {first} computed tokens but only "
                             f"{len(table)} blocks of {self.block_size}")
        n_new = max(0, self.blocks_needed(end) - len(table))
        # blocks already in the table that this step writes into; a shared or cached one is copied first
        written = range(first // self.block_size, min(len(table), self.blocks_needed(end)))
        to_copy = [i for i in written if table[i] in cached_blocks or self.blocks[table[i]].ref_count > 1
                   or self.blocks[table[i]].block_hash is not None]
        revived = sum(self.blocks[b].ref_count == 0 for b in cached_blocks)  # these leave the free list
        if n_new + len(to_copy) + revived > len(self.free):
            return None
        for block_id in cached_blocks:
            self._reference(block_id)
        request.block_table = table
        copies = []
        for i in to_copy:  # copy-on-write: a private copy replaces the block in this table
            source, copy = self.blocks[table[i]], self._take_free()
            copies.append((source.block_id, copy.block_id))
            table[i] = copy.block_id
            self._release(source)  # the original keeps its contents and its place in the prefix cache
        del request.block_hashes[first // self.block_size:]  # those blocks are rewritten (and re-registered)
        request.block_table.extend(self._take_free().block_id for _ in range(n_new))
        return copies

    def _release(self, block: Block) -> None:
        block.ref_count -= 1
        if block.ref_count == 0:
            self.free[block.block_id] = None  # most recently freed: evicted last
            if block.block_hash is None:
                self.free.move_to_end(block.block_id, last=False)  # nothing cached in it: reuse it first

    def free_request(self, request: Request) -> None:
        """Give back the request's blocks, tail first: the tail is then evicted before the shared prefix."""
        for block_id in reversed(request.block_table):
            self._release(self.blocks[block_id])
        request.block_table = []
        request.block_hashes = []
