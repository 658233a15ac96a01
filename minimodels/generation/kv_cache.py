"""KV caches for incremental decoding, and chunked prefill.

Decoding token t with a causal model needs the keys and values of tokens 0..t-1 in every layer, and they
never change: keep them instead of recomputing them. Keys are cached after RoPE has rotated them at their
absolute position, so a cached key stays valid whatever comes after it.

- `KVCache`: preallocated (B, Hkv, max_len, D) tensors per layer; token p goes to slot p. Writing past
  max_len raises a ValueError.
- `RollingKVCache`: for sliding-window models (window W), W slots per layer; token p goes to slot p % W and
  overwrites token p - W, which no later query can see. Memory stays constant however long the sequence.

Both expose the same protocol, used by the attention layers and the model:
    k_all, v_all = cache.update(layer_idx, k, v)  # store k, v (B, Hkv, T, D) at positions length..length+T-1
    cache.advance(T)                               # after every layer has been updated
`update` returns the keys and values the T new queries need, in position order and ending with the new
ones, so that `attention.attention_mask(T, t_k, causal=True, window)` is the exact mask over them.
"""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated key/value cache: per layer, k and v of shape (B, Hkv, max_len, D)."""

    def __init__(
        self, n_layers: int, batch_size: int, n_kv_heads: int, head_dim: int, max_len: int,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ):
        for name, value in (("n_layers", n_layers), ("batch_size", batch_size), ("n_kv_heads", n_kv_heads),
                            ("head_dim", head_dim), ("max_len", max_len)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_len = max_len
        self.length = 0  # tokens stored so far = absolute position of the next token

    def _check(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> None:
        if not 0 <= layer_idx < len(self.k):
            raise ValueError(f"layer_idx={layer_idx} is out of range for a cache of {len(self.k)} layers")
        B, H, _, D = self.k[layer_idx].shape
        if k.shape != v.shape or k.dim() != 4 or (k.size(0), k.size(1), k.size(3)) != (B, H, D):
            raise ValueError(
                f"k and v must both be (batch={B}, kv_heads={H}, T, head_dim={D}), "
                f"got k {tuple(k.shape)} and v {tuple(v.shape)}"
            )

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, Hkv, T, D) at positions length..length+T-1; return keys/values 0..length+T-1."""
        self._check(layer_idx, k, v)
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: it holds max_len={self.max_len} positions, {self.length} are used and "
                f"{k.size(2)} more were given (would need {end}); allocate a longer cache"
            )
        self.k[layer_idx][:, :, self.length:end] = k
        self.v[layer_idx][:, :, self.length:end] = v
        return self.k[layer_idx][:, :, :end], self.v[layer_idx][:, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions as written (called once per forward, after all layers)."""
        self.length += n

    def reset(self) -> None:
        """Forget the stored tokens (the memory is kept and reused)."""
        self.length = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class RollingKVCache(KVCache):
    """Rolling buffer of `window` slots for a sliding-window model; token p lives in slot p % window.

    A chunk of T <= window new tokens attends to the window - 1 tokens before it (read from the buffer
    before the chunk overwrites them) plus itself: exactly what the sliding-window mask allows.
    """

    def __init__(
        self, n_layers: int, batch_size: int, n_kv_heads: int, head_dim: int, window: int,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ):
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"RollingKVCache.window must be a positive int, got {window!r}")
        self.window = window
        super().__init__(n_layers, batch_size, n_kv_heads, head_dim, window, dtype, device)  # window slots

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the window - 1 cached positions before the chunk, then the chunk; then store the chunk."""
        self._check(layer_idx, k, v)
        T, W = k.size(2), self.window
        if T > W:
            raise ValueError(
                f"a chunk of {T} tokens is longer than the rolling cache's window={W}; "
                f"feed the prompt in chunks of at most {W} tokens (chunked prefill)"
            )
        device = k.device
        n_old = min(self.length, W - 1)  # the first new query (position length) sees keys > length - W
        old_slots = torch.arange(self.length - n_old, self.length, device=device) % W  # oldest first
        k_all = torch.cat((self.k[layer_idx][:, :, old_slots], k), dim=2)  # (B, Hkv, n_old + T, D)
        v_all = torch.cat((self.v[layer_idx][:, :, old_slots], v), dim=2)
        new_slots = torch.arange(self.length, self.length + T, device=device) % W  # distinct since T <= W
        self.k[layer_idx][:, :, new_slots] = k
        self.v[layer_idx][:, :, new_slots] = v
        return k_all, v_all


def new_cache(
    model: torch.nn.Module, batch_size: int = 1, kind: str = "static", max_len: int | None = None
) -> KVCache:
    """An empty cache shaped for `model` (a course Llama, read through its `.config`).

    kind="static": a KVCache of max_len positions (default config.max_seq_len);
    kind="rolling": a RollingKVCache of config.sliding_window slots (the model must use a sliding window).
    """
    config = model.config
    param = next(model.parameters())
    shape = dict(n_layers=config.n_layers, batch_size=batch_size, n_kv_heads=config.n_kv_heads,
                 head_dim=config.head_dim, dtype=param.dtype, device=param.device)
    if kind == "static":
        return KVCache(max_len=max_len if max_len is not None else config.max_seq_len, **shape)
    if kind == "rolling":
        if config.sliding_window is None:
            raise ValueError(
                "a rolling cache needs a sliding-window model, but config.sliding_window is None; "
                "use kind='static'"
            )
        return RollingKVCache(window=config.sliding_window, **shape)
    raise ValueError(f"cache kind must be 'static' or 'rolling', got {kind!r}")


@torch.no_grad()
def prefill(
    model: torch.nn.Module, input_ids: torch.Tensor, cache: KVCache, chunk_size: int | None = None
) -> torch.Tensor:
    """Run the prompt (B, T) through the model into `cache`, chunk_size tokens at a time; logits (B, T, V).

    Chunks bound the memory of the attention scores (chunk x keys instead of T x T) and are needed for a
    rolling cache, which takes at most `window` tokens at once. A rolling cache with chunk_size=None uses
    chunks of `window` tokens. The logits equal a one-shot prefill.
    """
    if input_ids.dim() != 2 or input_ids.size(1) < 1:
        raise ValueError(f"input_ids must be (batch, time), time >= 1, got shape {tuple(input_ids.shape)}")
    if chunk_size is None:
        chunk_size = cache.window if isinstance(cache, RollingKVCache) else input_ids.size(1)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if isinstance(cache, RollingKVCache) and chunk_size > cache.window:
        raise ValueError(f"chunk_size={chunk_size} is longer than the rolling cache's window={cache.window}")
    logits = [model(chunk, cache=cache) for chunk in input_ids.split(chunk_size, dim=1)]
    return torch.cat(logits, dim=1)


def kv_cache_bytes(config, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a full KV cache: a key and a value per layer, kv head, position, channel and sequence.

        bytes = 2 * layers * kv_heads * head_dim * seq_len * batch * bytes_per_element

    config: a LlamaConfig-like object (n_layers, n_kv_heads, head_dim) or a GPTConfig-like one (n_layer,
    n_head, n_embd: every head keeps its own keys and values). The figure a KVCache of that shape holds.
    """
    if all(hasattr(config, name) for name in ("n_layers", "n_kv_heads", "head_dim")):
        layers, kv_heads, head_dim = config.n_layers, config.n_kv_heads, config.head_dim
    elif all(hasattr(config, name) for name in ("n_layer", "n_head", "n_embd")):
        layers, kv_heads, head_dim = config.n_layer, config.n_head, config.n_embd // config.n_head
    else:
        raise TypeError(
            "config must have (n_layers, n_kv_heads, head_dim) like LlamaConfig or (n_layer, n_head, n_embd) "
            f"like GPTConfig, got {type(config).__name__}"
        )
    for name, value in (("seq_len", seq_len), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"kv_cache_bytes: {name} must be a non-negative int, got {value!r}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"kv_cache_bytes: dtype must be a torch.dtype, got {dtype!r}")
    return 2 * layers * kv_heads * head_dim * seq_len * batch * dtype.itemsize
