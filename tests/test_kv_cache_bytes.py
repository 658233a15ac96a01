import pytest
import torch

from minimodels import GPTConfig, KVCache, LlamaConfig
from minimodels.generation.kv_cache import kv_cache_bytes


def test_kv_cache_bytes_by_hand_and_against_a_cache():
    # Llama-2-70B shape: 80 layers, 8 kv heads of width 128; fp16 at 4096 tokens is 1.25 GiB
    llama70b = LlamaConfig(vocab_size=32000, dim=8192, n_layers=80, n_heads=64, n_kv_heads=8)
    assert kv_cache_bytes(llama70b, 4096, dtype=torch.float16) == 2 * 80 * 8 * 128 * 4096 * 2 == 1.25 * 2**30
    small = LlamaConfig(vocab_size=100, dim=64, n_layers=3, n_heads=4, n_kv_heads=2)
    cache = KVCache(n_layers=3, batch_size=5, n_kv_heads=2, head_dim=16, max_len=37)
    assert kv_cache_bytes(small, 37, batch=5) == cache.nbytes() == 2 * 3 * 2 * 16 * 37 * 5 * 4
    gpt = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=64)  # every head keeps its k, v
    assert kv_cache_bytes(gpt, 10, dtype=torch.bfloat16) == 2 * 2 * 4 * 16 * 10 * 2
    assert kv_cache_bytes(small, 0) == 0


def test_kv_cache_bytes_errors():
    config = LlamaConfig()
    with pytest.raises(TypeError, match="config must have"):
        kv_cache_bytes(object(), 10)
    with pytest.raises(ValueError, match="seq_len"):
        kv_cache_bytes(config, -1)
    with pytest.raises(ValueError, match="batch"):
        kv_cache_bytes(config, 10, batch=1.5)
    with pytest.raises(TypeError, match="dtype"):
        kv_cache_bytes(config, 10, dtype="float16")
