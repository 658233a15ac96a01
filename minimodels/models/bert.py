"""BERT: a bidirectional transformer encoder, pre-trained by filling in masked tokens.

    x = LayerNorm(token + position + segment embeddings)
    for each layer:  x = LayerNorm(x + attention(x))      # every token sees every real token (no causal mask)
                     x = LayerNorm(x + mlp(x))            # post-LN, GELU
    hidden states (B, T, C): one vector per token, to pool into a sentence vector or to predict masked tokens

Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"
(arXiv:1810.04805). Where GPT predicts the next token and so may only look left, BERT hides 15% of the
tokens and predicts them from both sides (masked language modelling, `mask_tokens` and `mlm_loss`).
Same computation as Hugging Face's BertModel, so `minimodels.from_hf` loads its weights (minimodels/hf/bert.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}
IGNORE_INDEX = -100  # label of the positions that the MLM loss skips (PyTorch's cross_entropy default)


@dataclass
class BertConfig:
    vocab_size: int = 1024
    block_size: int = 128  # longest sequence the position table covers (HF: max_position_embeddings)
    type_vocab_size: int = 2  # segments A and B (HF: token_type_ids)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128  # hidden width (HF: hidden_size)
    mlp_hidden: int | None = None  # default 4 * n_embd (HF: intermediate_size)
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    activation: str = "gelu"  # BERT uses the exact (erf) GELU
    pooler: bool = False  # tanh(dense(hidden[:, 0])): BERT's [CLS] pooler, for next-sentence prediction
    mlm_head: bool = False  # the masked-language-model head (transform + decoder tied to the token embeddings)

    def __post_init__(self):
        def fail(field: str, reason: str):
            raise ValueError(f"BertConfig.{field}={getattr(self, field)!r}: {reason}")

        for name in ("vocab_size", "block_size", "type_vocab_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "must be a positive int")
        if self.n_embd % self.n_head:
            fail("n_embd", f"must be divisible by n_head={self.n_head} (head width = n_embd / n_head)")
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd
        if not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 1:
            fail("mlp_hidden", "must be a positive int")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if self.layer_norm_eps <= 0:
            fail("layer_norm_eps", "must be > 0")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            fail("pad_token_id", f"must be an id in [0, vocab_size={self.vocab_size})")
        if self.activation not in ACTIVATIONS:
            fail("activation", f"must be one of {sorted(ACTIVATIONS)}")

    def to_dict(self) -> dict:
        return asdict(self)


class BidirectionalSelfAttention(nn.Module):
    """Multi-head self-attention where each query sees every key that is a real token (padding is hidden)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_embd, n_embd)
        self.key = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))  # (B, H, T, D)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T): True = may attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class BertLayer(nn.Module):
    """Post-LN block (the original transformer's order): x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attn = BidirectionalSelfAttention(config.n_embd, config.n_head, config.dropout)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.fc = nn.Linear(config.n_embd, config.mlp_hidden)
        self.proj = nn.Linear(config.mlp_hidden, config.n_embd)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.act = ACTIVATIONS[config.activation]
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.ln_1(x + self.drop(self.attn(x, key_mask)))
        return self.ln_2(x + self.drop(self.proj(self.act(self.fc(x)))))


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense + GELU + LayerNorm, then logits against the (tied) token embeddings."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)
        self.act = ACTIVATIONS[config.activation]
        self.ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.n_embd, config.vocab_size)
        self.decoder.weight = word_embeddings.weight  # tied, as in BERT

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.ln(self.act(self.dense(hidden))))  # (..., V)


class Bert(nn.Module):
    """model(input_ids (B, T), attention_mask (B, T) 1 = real token, token_type_ids (B, T)) -> hidden (B, T, C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, padding_idx=config.pad_token_id)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.wse = nn.Embedding(config.type_vocab_size, config.n_embd)  # segment (token type) embeddings
        self.ln_emb = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.n_layer))
        self.pooler = nn.Linear(config.n_embd, config.n_embd) if config.pooler else None
        self.mlm = MLMHead(config, self.wte) if config.mlm_head else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """BERT's initialization: N(0, 0.02) weights, zero biases, a zero vector for the padding token."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      token_type_ids: torch.Tensor | None) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}")
        T = input_ids.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} is longer than block_size={self.config.block_size} "
                             "(the position table); truncate the input")
        if input_ids.numel() and not 0 <= int(input_ids.min()) <= int(input_ids.max()) < self.config.vocab_size:
            raise ValueError(f"input_ids must be in [0, vocab_size={self.config.vocab_size}), got values in "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(t.shape)}")
        if attention_mask is not None and not bool(attention_mask.bool().any(dim=1).all()):
            raise ValueError("attention_mask has a row with no real token (all zeros): nothing to attend to")
        if token_type_ids is not None and token_type_ids.numel() and not (
                0 <= int(token_type_ids.min()) and int(token_type_ids.max()) < self.config.type_vocab_size):
            raise ValueError(f"token_type_ids must be in [0, type_vocab_size={self.config.type_vocab_size})")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.drop(self.ln_emb(self.wte(input_ids) + self.wpe(pos) + self.wse(token_type_ids)))  # (B, T, C)
        key_mask = None if attention_mask is None else attention_mask.bool()  # (B, T)
        for layer in self.layers:
            x = layer(x, key_mask)
        return x  # (B, T, C)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's pooler output tanh(W h_[CLS] + b): (B, T, C) -> (B, C). Needs config.pooler."""
        if self.pooler is None:
            raise ValueError("this Bert has no pooler (BertConfig.pooler=False)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary (..., V) from hidden states (..., C). Needs config.mlm_head."""
        if self.mlm is None:
            raise ValueError("this Bert has no masked-LM head (BertConfig.mlm_head=False)")
        return self.mlm(hidden)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the hidden states (B, T, C) over the real tokens -> (B, C): the sentence vector of SBERT.

    Reimers & Gurevych 2019, "Sentence-BERT" (arXiv:1908.10084): mean pooling beats the [CLS] vector.
    """
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be (batch, time, channels), got shape {tuple(hidden.shape)}")
    if attention_mask is None:
        return hidden.mean(dim=1)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"attention_mask must be {tuple(hidden.shape[:2])}, got {tuple(attention_mask.shape)}")
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # (B, C)


def mask_tokens(
    input_ids: torch.Tensor, mask_token_id: int, vocab_size: int, special_token_ids: tuple[int, ...] = (),
    mask_prob: float = 0.15, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: pick each token with probability mask_prob; of those 80% -> [MASK], 10% -> random, 10% kept.

    Returns (inputs, labels): labels hold the original id at the picked positions and IGNORE_INDEX elsewhere.
    Special tokens ([CLS], [SEP], [PAD], ...) are never picked. The random and kept cases teach the model
    that an unmasked token may be wrong too, so it keeps a good representation of every position.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input_ids must be an integer tensor, got {type(input_ids).__name__}")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id={mask_token_id} must be in [0, vocab_size={vocab_size})")
    device = input_ids.device

    def uniform() -> torch.Tensor:
        return torch.rand(input_ids.shape, generator=generator).to(device)

    special = torch.isin(input_ids, torch.tensor(list(special_token_ids), dtype=input_ids.dtype, device=device))
    picked = (uniform() < mask_prob) & ~special
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = uniform()  # one draw decides the fate of each picked token: [0, .8) mask, [.8, .9) random, [.9, 1) kept
    to_mask = picked & (u < 0.8)
    to_random = picked & (u >= 0.8) & (u < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(device, input_ids.dtype)
    inputs = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def mlm_loss(model: Bert, inputs: torch.Tensor, labels: torch.Tensor,
             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the masked-LM logits at the picked positions only (labels != IGNORE_INDEX).

    Has the (model, inputs, targets) signature of the course's `train` loop. The vocabulary projection is
    computed only at the picked positions: about 15% of the cost of projecting every position.
    """
    if labels.shape != inputs.shape:
        raise ValueError(f"labels must have the shape of inputs {tuple(inputs.shape)}, got {tuple(labels.shape)}")
    picked = labels != IGNORE_INDEX  # (B, T)
    if not bool(picked.any()):
        raise ValueError("labels pick no position (all are IGNORE_INDEX): nothing to predict")
    hidden = model(inputs, attention_mask)  # (B, T, C)
    logits = model.mlm_logits(hidden[picked])  # (N, V)
    return F.cross_entropy(logits, labels[picked])
