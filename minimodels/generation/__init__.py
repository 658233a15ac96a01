"""Decoding: sampling, full-recompute generation, KV caches, cached and recurrent decoding."""

from minimodels.generation.cached import generate_cached
from minimodels.generation.generate import generate
from minimodels.generation.kv_cache import KVCache, RollingKVCache, new_cache
from minimodels.generation.recurrent import generate_recurrent

__all__ = ["KVCache", "RollingKVCache", "generate", "generate_cached", "generate_recurrent", "new_cache"]
