"""Paged KV cache pieces without a model: the block manager (free list, reference counts, prefix caching,
copy-on-write, eviction), the scheduler (chunked prefill, continuous batching, preemption), and paged
attention against attention written out over contiguous keys."""

import math

import pytest
import torch

import minimodels.serving.block_manager as bm_module
from minimodels.serving import BlockManager, SamplingParams, Scheduler, paged_batch
from minimodels.serving.paged_attention import paged_attention
from minimodels.serving.request import Request, RequestStatus


def request(tokens, rid="r", max_tokens=8) -> Request:
    return Request(rid, list(tokens), SamplingParams(max_tokens=max_tokens))


def computed(manager: BlockManager, req: Request, n: int | None = None) -> None:
    """Mark the request's tokens (or n more) as computed, as the engine does after a forward."""
    req.num_computed_tokens = len(req.token_ids) if n is None else req.num_computed_tokens + n
    manager.register_full_blocks(req)


# ---- block manager ----------------------------------------------------------------------------------
def test_blocks_cover_the_tokens_and_come_back_when_freed():
    manager = BlockManager(num_blocks=10, block_size=16)
    req = request(range(40))
    assert manager.allocate_slots(req, 40) == []
    assert len(req.block_table) == 3 and len(set(req.block_table)) == 3  # ceil(40 / 16)
    assert manager.num_free_blocks == 7
    computed(manager, req)
    assert manager.allocate_slots(req, 8) == [] and len(req.block_table) == 3  # 48 slots: still 3 blocks
    req.num_computed_tokens = 48
    assert manager.allocate_slots(req, 1) == [] and len(req.block_table) == 4  # token 49 opens a 4th
    manager.free_request(req)
    assert manager.num_free_blocks == 10 and req.block_table == []
    assert all(b.ref_count == 0 for b in manager.blocks)


def test_allocation_that_does_not_fit_changes_nothing():
    manager = BlockManager(num_blocks=3, block_size=4)
    a = request(range(8), "a")
    manager.allocate_slots(a, 8)
    b = request(range(100, 108), "b")
    assert manager.allocate_slots(b, 8) is None  # needs 2, 1 is free
    assert b.block_table == [] and manager.num_free_blocks == 1


def test_prefix_blocks_are_shared_with_reference_counts_and_the_hash_is_chained():
    manager = BlockManager(num_blocks=20, block_size=4)
    a = request([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "a")
    manager.allocate_slots(a, 10)
    computed(manager, a)
    assert len(a.block_hashes) == 2  # two full blocks registered, the partial third is not
    b = request([1, 2, 3, 4, 5, 6, 7, 8, 99, 98, 97], "b")
    hit = manager.find_cached_prefix(b)
    assert hit == a.block_table[:2]
    b.num_computed_tokens = 8
    manager.allocate_slots(b, 3, hit)
    assert b.block_table[:2] == a.block_table[:2] and b.block_table[2] != a.block_table[2]
    assert [manager.blocks[i].ref_count for i in a.block_table] == [2, 2, 1]
    # same second block, different first block: the chained key differs, so no hit at all
    c = request([0, 2, 3, 4, 5, 6, 7, 8], "c")
    assert manager.find_cached_prefix(c) == []
    # expected keys written out: block 1's key depends on block 0's key
    h0 = hash((bm_module.ROOT_HASH, (1, 2, 3, 4)))
    assert a.block_hashes == [h0, hash((h0, (5, 6, 7, 8)))]


def test_a_hash_collision_is_caught_by_the_token_check(monkeypatch):
    monkeypatch.setattr(bm_module, "chain_hash", lambda parent, tokens: 42)  # every block collides
    manager = BlockManager(num_blocks=8, block_size=4)
    a = request([1, 2, 3, 4], "a")
    manager.allocate_slots(a, 4)
    computed(manager, a)
    assert manager.find_cached_prefix(request([1, 2, 3, 4, 5], "same")) == a.block_table[:1]
    assert manager.find_cached_prefix(request([9, 9, 9, 9, 5], "other")) == []  # same key, other tokens


def test_a_fully_cached_prompt_copies_the_shared_block_it_writes_into():
    manager = BlockManager(num_blocks=8, block_size=4)
    a = request(range(8), "a")
    manager.allocate_slots(a, 8)
    computed(manager, a)
    b = request(range(8), "b")
    hit = manager.find_cached_prefix(b)
    assert hit == a.block_table  # both blocks
    b.num_computed_tokens = 7  # the last token is recomputed for its logits: it writes into block 1
    copies = manager.allocate_slots(b, 1, hit)
    assert len(copies) == 1 and copies[0][0] == a.block_table[1]
    assert b.block_table == [a.block_table[0], copies[0][1]]
    assert manager.blocks[a.block_table[0]].ref_count == 2 and manager.blocks[a.block_table[1]].ref_count == 1
    assert manager.num_free_blocks == 8 - 3


def test_a_cached_block_is_copied_even_when_nobody_else_holds_it_so_the_cache_keeps_it():
    manager = BlockManager(num_blocks=8, block_size=4)
    a = request(range(8), "a")
    manager.allocate_slots(a, 8)
    computed(manager, a)
    table = list(a.block_table)
    manager.free_request(a)  # both blocks are free but still cached
    b = request(range(8), "b")
    hit = manager.find_cached_prefix(b)
    b.num_computed_tokens = 7
    copies = manager.allocate_slots(b, 1, hit)
    assert copies == [(table[1], b.block_table[1])] and b.block_table[0] == table[0]
    assert manager.blocks[table[1]].ref_count == 0 and manager.num_free_blocks == 8 - 2
    assert manager.find_cached_prefix(request(range(8), "c")) == table  # the cached prefix is intact


def test_freed_blocks_stay_cached_until_evicted_least_recently_freed_first():
    manager = BlockManager(num_blocks=4, block_size=2)
    a = request([1, 2, 3, 4], "a")
    manager.allocate_slots(a, 4)
    computed(manager, a)
    table = list(a.block_table)
    manager.free_request(a)
    assert manager.num_free_blocks == 4  # evictable blocks count as free
    again = request([1, 2, 3, 4, 5], "again")
    hit = manager.find_cached_prefix(again)
    assert hit == table
    again.num_computed_tokens = 4
    manager.allocate_slots(again, 1, hit)
    assert manager.num_free_blocks == 1  # 2 revived, 1 new
    manager.free_request(again)
    # free order: the unhashed block [5] first (reused first), then the tail [3, 4], then the head [1, 2]
    other = request([7, 7, 7, 7, 7, 7], "other")
    manager.allocate_slots(other, 6)  # 3 of the 4 blocks: the unhashed one, then the least recently freed
    assert table[1] in other.block_table and table[0] not in other.block_table
    assert manager.find_cached_prefix(request([1, 2, 3, 4], "probe")) == table[:1]  # the head survived


def test_block_manager_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_blocks must be a positive int"):
        BlockManager(0)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        BlockManager(4, block_size=0)


# ---- scheduler ----------------------------------------------------------------------------------------
def run_step(out) -> None:
    """What the engine does after the forward: advance the counts, append a token where one is sampled."""
    for chunk in out.chunks:
        samples = chunk.samples
        chunk.request.num_computed_tokens += chunk.num_tokens
        if samples:
            chunk.request.token_ids.append(7)


def test_prefill_is_chunked_to_the_token_budget():
    scheduler = Scheduler(BlockManager(64, 4), max_num_seqs=4, max_num_batched_tokens=8)
    req = request(range(20))
    scheduler.add(req)
    sizes = []
    for _ in range(4):
        out = scheduler.schedule()
        sizes.append([(c.num_tokens, c.samples, c.is_prefill) for c in out.chunks])
        run_step(out)
    assert sizes == [[(8, False, True)], [(8, False, True)], [(4, True, True)], [(1, True, False)]]


def test_a_new_request_joins_between_decode_steps():
    scheduler = Scheduler(BlockManager(64, 4), max_num_seqs=4, max_num_batched_tokens=64)
    first = request(range(5), "first")
    scheduler.add(first)
    for _ in range(3):
        run_step(scheduler.schedule())
    late = request(range(6), "late")
    scheduler.add(late)
    out = scheduler.schedule()
    assert [(c.request.request_id, c.num_tokens) for c in out.chunks] == [("first", 1), ("late", 6)]
    assert out.admitted == [late]


def test_max_num_seqs_caps_the_running_batch():
    scheduler = Scheduler(BlockManager(64, 4), max_num_seqs=2, max_num_batched_tokens=64)
    for i in range(3):
        scheduler.add(request(range(3), f"r{i}"))
    out = scheduler.schedule()
    assert [c.request.request_id for c in out.chunks] == ["r0", "r1"] and len(scheduler.waiting) == 1


def test_out_of_blocks_preempts_the_newest_request_which_keeps_its_tokens():
    manager = BlockManager(num_blocks=4, block_size=2)
    scheduler = Scheduler(manager, max_num_seqs=4, max_num_batched_tokens=64)
    old, new = request([1, 2, 3], "old"), request([4, 5, 6], "new")
    scheduler.add(old)
    scheduler.add(new)
    run_step(scheduler.schedule())  # both prefilled: 2 blocks each, pool full; each sampled a 4th token
    assert manager.num_free_blocks == 0
    run_step(scheduler.schedule())  # the 4th tokens fit in the second blocks
    out = scheduler.schedule()  # the 5th tokens need a new block each: "new" gives its blocks back
    assert out.preempted == [new] and [c.request for c in out.chunks] == [old]
    assert new.status is RequestStatus.WAITING and new.num_computed_tokens == 0 and new.block_table == []
    assert new.token_ids == [4, 5, 6, 7, 7] and scheduler.waiting[0] is new
    run_step(out)
    scheduler.finish(old, "length")
    out = scheduler.schedule()  # "new" comes back and recomputes all of its 5 tokens (prompt + outputs)
    assert [(c.request, c.num_tokens, c.is_prefill) for c in out.chunks] == [(new, 5, True)]


def test_scheduler_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_num_seqs must be a positive int"):
        Scheduler(BlockManager(4), max_num_seqs=0)
    with pytest.raises(ValueError, match="max_num_batched_tokens must be a positive int"):
        Scheduler(BlockManager(4), max_num_batched_tokens=0)


# ---- paged attention ------------------------------------------------------------------------------
def reference_attention(q, k, v, window):
    """Attention written out: q (Tq, H, D) are the last Tq of the Tk positions of k, v (Tk, Hkv, D)."""
    t_q, n_heads, d = q.shape
    t_k, n_kv = k.shape[0], k.shape[1]
    out = torch.empty_like(q)
    for h in range(n_heads):
        kv = h // (n_heads // n_kv)
        for i in range(t_q):
            p = t_k - t_q + i
            lo = 0 if window is None else max(0, p - window + 1)
            scores = (k[lo:p + 1, kv] @ q[i, h]) / math.sqrt(d)  # (visible,)
            out[i, h] = torch.softmax(scores, dim=0) @ v[lo:p + 1, kv]
    return out


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("n_kv", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_paged_attention_equals_attention_over_contiguous_keys(n_kv, window):
    torch.manual_seed(0)
    n_heads, d, block_size, num_blocks = 4, 8, 4, 40
    k_cache, v_cache = torch.randn(num_blocks, block_size, n_kv, d), torch.randn(num_blocks, block_size, n_kv, d)
    # (context length, queries): decodes, a chunk after a cache, a whole prompt, an exact multiple of the block
    shapes = [(1, 1), (9, 1), (13, 5), (7, 7), (16, 1), (8, 8)]
    free = torch.randperm(num_blocks).tolist()  # blocks scattered anywhere in the pool
    tables = [[free.pop() for _ in range(-(-ctx // block_size))] for ctx, _ in shapes]
    contexts = []
    for table, (ctx, _) in zip(tables, shapes, strict=True):
        k = k_cache[table].reshape(-1, n_kv, d)[:ctx]  # the sequence's keys, contiguous
        v = v_cache[table].reshape(-1, n_kv, d)[:ctx]
        contexts.append((k, v))
    q = torch.randn(sum(n for _, n in shapes), n_heads, d)
    batch = paged_batch(tables, [c for c, _ in shapes], [n for _, n in shapes], block_size, window)
    out = paged_attention(q, k_cache, v_cache, batch)
    expected = torch.cat([reference_attention(qs, k, v, window) for qs, (k, v)
                          in zip(q.split([n for _, n in shapes]), contexts, strict=True)])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_paged_batch_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="query_len"):
        paged_batch([[0]], [3], [4], block_size=4)
    with pytest.raises(ValueError, match="blocks"):
        paged_batch([[0]], [5], [1], block_size=4)
    with pytest.raises(ValueError, match="one block table"):
        paged_batch([[0], [1]], [3], [1], block_size=4)
