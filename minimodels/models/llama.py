"""The Llama family in one model: Llama (dense), Mistral (sliding window) and Mixtral (mixture of experts).

    x = embed(ids)
    for each layer:  x = x + attention(rmsnorm(x))   # grouped-query attention, RoPE, optional window
                     x = x + feedforward(rmsnorm(x))  # SwiGLU, or a top-k mixture of SwiGLU experts
    logits = lm_head(rmsnorm(x))

What differs from GPT-2: RMSNorm instead of LayerNorm, no biases, no learned position table (RoPE rotates
queries and keys instead), SwiGLU instead of a GELU MLP, fewer key/value heads than query heads. The
config picks the variant: `sliding_window` makes it Mistral, `n_experts` makes it Mixtral. Same computation
as Hugging Face's LlamaForCausalLM / MistralForCausalLM / MixtralForCausalLM (see minimodels/hf/llama.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from kernels.ops.flash_attention.ref import HEAD_DIMS
from minimodels.layers.gqa import GroupedQueryAttention
from minimodels.layers.mlp import SwiGLU
from minimodels.layers.moe import MoE, load_balancing_loss
from minimodels.layers.norms import RMSNorm
from minimodels.layers.rope import RotaryEmbedding
from minimodels.models.inputs import check_token_ids
from minimodels.runtime import num_parameters
from minimodels.training.losses import token_cross_entropy


@dataclass
class LlamaConfig:
    vocab_size: int = 256
    dim: int = 64  # hidden width
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # default n_heads (multi-head); 1 is multi-query attention
    head_dim: int | None = None  # default dim // n_heads
    mlp_hidden: int | None = None  # default about 8/3 * dim, rounded up to a multiple of 32
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 256  # default length of a static KV cache (RoPE itself grows on demand)
    sliding_window: int | None = None  # Mistral: attend to the last sliding_window positions only
    tie_embeddings: bool = False
    n_experts: int | None = None  # None or 0: dense SwiGLU; >= 1: mixture of experts (Mixtral)
    top_k: int = 2  # experts per token
    router_aux_loss_coef: float = 0.001  # weight of the load-balancing loss in `llama_loss`
    dropout: float = 0.0
    use_kernels: bool = False  # attention and RMSNorm through kernels.flash_attention / kernels.rms_norm (Triton)

    def __post_init__(self):
        def fail(field: str, reason: str):
            raise ValueError(f"LlamaConfig.{field}={getattr(self, field)!r}: {reason}")

        for name in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "must be a positive int")
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if not isinstance(self.n_kv_heads, int) or self.n_kv_heads < 1:
            fail("n_kv_heads", "must be a positive int")
        if self.n_heads % self.n_kv_heads:
            fail("n_kv_heads", f"must divide n_heads={self.n_heads} (each kv head serves a group of heads)")
        if self.head_dim is None:
            if self.dim % self.n_heads:
                fail("dim", f"must be divisible by n_heads={self.n_heads} (head width = dim / n_heads)")
            self.head_dim = self.dim // self.n_heads
        if not isinstance(self.head_dim, int) or self.head_dim < 1:
            fail("head_dim", "must be a positive int")
        if self.head_dim % 2:
            fail("head_dim", "must be even: RoPE rotates pairs of coordinates")
        if self.mlp_hidden is None:
            self.mlp_hidden = 32 * math.ceil(8 * self.dim / 3 / 32)
        if not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 1:
            fail("mlp_hidden", "must be a positive int")
        if self.rope_theta <= 0:
            fail("rope_theta", "must be > 0")
        if self.norm_eps <= 0:
            fail("norm_eps", "must be > 0")
        window = self.sliding_window
        if window is not None and (not isinstance(window, int) or window < 1):
            fail("sliding_window", "must be None or an int >= 1 (window < 1 sees nothing)")
        if self.n_experts is not None and (not isinstance(self.n_experts, int) or self.n_experts < 0):
            fail("n_experts", "must be None, 0 (dense) or a positive int")
        if self.is_moe and (not isinstance(self.top_k, int) or self.top_k < 1):
            fail("top_k", "must be a positive int")
        if self.is_moe and self.top_k > self.n_experts:
            fail("top_k", f"cannot exceed n_experts={self.n_experts}")
        if self.router_aux_loss_coef < 0:
            fail("router_aux_loss_coef", "must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if self.use_kernels and self.dropout > 0:
            fail("use_kernels", f"the Triton attention kernel has no dropout; set dropout=0 (got {self.dropout})")
        if self.use_kernels and self.head_dim not in HEAD_DIMS:
            fail("head_dim", f"must be one of {HEAD_DIMS} with use_kernels=True (the head dims kernels.flash_attention "
                             f"takes); change dim / n_heads or head_dim, or set use_kernels=False")

    @property
    def is_moe(self) -> bool:
        return bool(self.n_experts)

    def to_dict(self) -> dict:
        """The fields as a dict, to build a variant: LlamaConfig(**{**config.to_dict(), "n_layers": 4})."""
        return asdict(self)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.dim, config.norm_eps, config.use_kernels)
        self.attn = GroupedQueryAttention(config.dim, config.n_heads, config.n_kv_heads, config.head_dim,
                                          config.sliding_window, config.dropout, config.use_kernels)
        self.mlp_norm = RMSNorm(config.dim, config.norm_eps, config.use_kernels)
        if config.is_moe:
            self.mlp = MoE(config.dim, config.mlp_hidden, config.n_experts, config.top_k)
        else:
            self.mlp = SwiGLU(config.dim, config.mlp_hidden)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None, layer_idx: int = 0):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, cache, layer_idx))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class Llama(nn.Module):
    """model(input_ids (B, T), cache=None) -> logits (B, T, vocab_size).

    With a cache (kv_cache.KVCache or RollingKVCache) the tokens continue the cached sequence: they sit at
    positions cache.length .. cache.length + T - 1, and the cache advances by T. After every forward,
    `aux_loss` holds the load-balancing loss over all MoE layers (None for a dense model).
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.rope = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps, config.use_kernels)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.aux_loss: torch.Tensor | None = None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, active: bool = False) -> int:
        """Parameter count; active=True counts only the top_k experts a token uses in each MoE layer."""
        n = num_parameters(self)
        if active and self.config.is_moe:
            per_expert = num_parameters(self.layers[0].mlp.experts[0])
            n -= self.config.n_layers * (self.config.n_experts - self.config.top_k) * per_expert
        return n

    def forward(self, input_ids: torch.Tensor, cache=None) -> torch.Tensor:
        if input_ids.dim() != 2 or input_ids.size(1) < 1:
            raise ValueError(f"input_ids must be (batch, time), time >= 1, got {tuple(input_ids.shape)}")
        check_token_ids(input_ids, self.config.vocab_size)
        T = input_ids.size(1)
        start = cache.length if cache is not None else 0
        cos, sin = self.rope(T, start, device=input_ids.device)  # (T, head_dim) at absolute positions
        x = self.embed(input_ids)  # (B, T, dim)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i)
        if cache is not None:
            cache.advance(T)
        if self.config.is_moe:
            logits = [layer.mlp.router_logits for layer in self.layers]
            self.aux_loss = load_balancing_loss(logits, self.config.n_experts, self.config.top_k)
        return self.lm_head(self.norm(x))  # (B, T, V)


def llama_loss(model: Llama, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, plus router_aux_loss_coef * aux_loss for a mixture of experts.

    Same signature as train.train's `loss_fn`, so `train(model, get_batch, cfg, loss_fn=llama_loss)` works.
    """
    loss = token_cross_entropy(model(inputs), targets)
    if model.aux_loss is not None:
        loss = loss + model.config.router_aux_loss_coef * model.aux_loss
    return loss
