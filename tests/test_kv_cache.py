"""KV caches: cached decoding equals the full forward, the rolling buffer equals the sliding-window mask,
chunked prefill equals one-shot prefill, and the limits raise clear errors."""

import pytest
import torch

from minimodels.generation.cached import generate_cached
from minimodels.generation.generate import generate
from minimodels.generation.kv_cache import KVCache, RollingKVCache, new_cache, prefill
from minimodels.models.llama import Llama, LlamaConfig


def model(seed=0, **overrides) -> Llama:
    torch.manual_seed(seed)
    values = dict(vocab_size=61, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=48, max_seq_len=64)
    values.update(overrides)
    m = Llama(LlamaConfig(**values)).eval()
    with torch.no_grad():  # larger weights than the init: peaked logits, clear greedy choices
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.15)
    return m


def tokens(batch=2, length=30, seed=1, vocab=61):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def step_by_step_logits(m, ids, cache):
    """Feed ids one token at a time through the cache; logits (B, T, V)."""
    with torch.no_grad():
        return torch.cat([m(ids[:, t:t + 1], cache=cache) for t in range(ids.size(1))], dim=1)


@pytest.mark.parametrize(
    "overrides", [{}, {"n_kv_heads": 1}, {"n_experts": 4, "top_k": 2}, {"sliding_window": 5}],
    ids=["gqa", "mqa", "moe", "window-static"],
)
def test_static_cache_step_by_step_equals_full_forward(overrides):
    m = model(**overrides)
    ids = tokens()
    with torch.no_grad():
        full = m(ids)  # (B, T, V)
    cached = step_by_step_logits(m, ids, new_cache(m, batch_size=2, max_len=30))
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("window", [1, 3, 7])
def test_rolling_cache_equals_full_forward_with_sliding_window_mask(window):
    m = model(sliding_window=window)
    ids = tokens(length=40)  # many times the window
    with torch.no_grad():
        full = m(ids)
    cache = new_cache(m, batch_size=2, kind="rolling")
    assert isinstance(cache, RollingKVCache) and cache.k[0].shape == (2, 2, window, 8)
    bytes_before = cache.nbytes()
    torch.testing.assert_close(step_by_step_logits(m, ids, cache), full, rtol=0, atol=1e-5)
    assert cache.nbytes() == bytes_before and cache.k[0].shape[2] == window  # constant memory
    assert cache.length == 40


@pytest.mark.parametrize(
    "kind, chunk",
    [("static", 1), ("static", 4), ("static", 7), ("rolling", 1), ("rolling", 3), ("rolling", 6)],
)
def test_chunked_prefill_equals_one_shot_prefill(kind, chunk):
    m = model(sliding_window=6)
    ids = tokens(length=23)
    one_shot_cache = new_cache(m, 2, "static", max_len=30)
    one_shot = prefill(m, ids, one_shot_cache)
    chunked_cache = new_cache(m, 2, kind, max_len=30)
    chunked = prefill(m, ids, chunked_cache, chunk_size=chunk)
    torch.testing.assert_close(chunked, one_shot, rtol=0, atol=1e-5)
    next_ids = tokens(length=3, seed=9)  # and the caches continue the same way
    torch.testing.assert_close(step_by_step_logits(m, next_ids, chunked_cache),
                               step_by_step_logits(m, next_ids, one_shot_cache), rtol=0, atol=1e-5)


def test_cached_generation_equals_uncached_generation():
    m = model(sliding_window=4)
    prompt = tokens(length=9)
    expected = generate(m, prompt, 24, greedy=True)
    assert torch.equal(generate_cached(m, prompt, 24, greedy=True, cache="static"), expected)
    rolling = generate_cached(m, prompt, 24, greedy=True, cache="rolling", prefill_chunk=2)
    assert torch.equal(rolling, expected)
    sampled = generate(m, prompt, 24, temperature=0.8, top_k=20, top_p=0.9, seed=3)
    assert torch.equal(generate_cached(m, prompt, 24, temperature=0.8, top_k=20, top_p=0.9, seed=3), sampled)
    assert torch.equal(generate_cached(m, prompt, 0), prompt)


def test_static_cache_overflow_raises_but_rolling_cache_does_not():
    m = model(sliding_window=4)
    cache = new_cache(m, batch_size=1, max_len=10)
    prefill(m, tokens(1, 8), cache)
    with pytest.raises(ValueError, match=r"max_len=10 positions, 8 are used and 3 more .*would need 11"):
        m(tokens(1, 3), cache=cache)
    rolling = new_cache(m, batch_size=1, kind="rolling")
    prefill(m, tokens(1, 50), rolling)  # far past any length: slots are reused
    assert rolling.length == 50


def test_cache_rejects_bad_use():
    m = model(sliding_window=4)
    rolling = new_cache(m, batch_size=2, kind="rolling")
    with pytest.raises(ValueError, match="chunk of 5 tokens is longer than the rolling cache's window=4"):
        m(tokens(2, 5), cache=rolling)
    with pytest.raises(ValueError, match="chunk_size=5 is longer than the rolling cache's window=4"):
        prefill(m, tokens(2, 9), new_cache(m, 2, "rolling"), chunk_size=5)
    with pytest.raises(ValueError, match=r"k and v must both be \(batch=2"):
        m(tokens(1, 2), cache=new_cache(m, batch_size=2))
    with pytest.raises(ValueError, match="needs a sliding-window model"):
        new_cache(model(), kind="rolling")
    with pytest.raises(ValueError, match="'static' or 'rolling'"):
        new_cache(m, kind="paged")
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        KVCache(n_layers=1, batch_size=1, n_kv_heads=1, head_dim=8, max_len=0)
    used = new_cache(m, 2)
    prefill(m, tokens(2, 3), used)
    with pytest.raises(ValueError, match="needs an empty cache"):
        generate_cached(m, tokens(2, 3), 2, cache=used)


def test_static_cache_holds_rotated_keys_at_their_slots():
    m = model()
    cache = new_cache(m, batch_size=1, max_len=12)
    prefill(m, tokens(1, 5), cache)
    assert cache.length == 5
    assert cache.k[0][:, :, :5].abs().sum() > 0 and cache.k[0][:, :, 5:].abs().sum() == 0
    cache.reset()
    assert cache.length == 0
