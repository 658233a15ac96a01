"""A recurrent encoder-decoder (GRU), with or without additive attention (Bahdanau et al., 2014).

    model = Seq2Seq(Seq2SeqConfig(vocab_size=13, attention=True))
    logits = model(src, tgt_in)                              # teacher forcing: (B, T_out, V)
    tokens, weights = model.greedy_decode(src, max_len=30)   # (B, T_out), (B, T_out, T_src) or None

Both variants share everything but the context vector the decoder reads at each step:
- attention=False: the encoder's last hidden state, the same at every step (Cho et al., 2014): a bottleneck.
- attention=True: a weighted average of all encoder states, re-weighted at every step by additive attention.
Sources are right-padded with `pad_id`; padding is masked out of the attention and out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from minimodels.training.losses import token_cross_entropy


@dataclass
class Seq2SeqConfig:
    vocab_size: int = 13  # shared by source and target (3 specials + symbols for the toy tasks)
    emb_size: int = 32
    hidden_size: int = 128  # GRU state of encoder and decoder
    attention: bool = True  # False: the decoder only gets the encoder's last hidden state
    attn_size: int | None = None  # width of the additive-attention layer; default hidden_size
    max_output_len: int = 64  # longest greedy decode allowed
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        if self.attn_size is None:
            self.attn_size = self.hidden_size
        for name in ("vocab_size", "emb_size", "hidden_size", "attn_size", "max_output_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Seq2SeqConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.attention, bool):
            raise ValueError(f"Seq2SeqConfig.attention must be a bool, got {self.attention!r}")
        specials = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in specials.items():
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"Seq2SeqConfig.{name} must be an id in [0, vocab_size={self.vocab_size}), "
                                 f"got {value!r}")
        if len(set(specials.values())) != 3:
            raise ValueError(f"Seq2SeqConfig.pad_id, bos_id and eos_id must be distinct, got {specials}")


class EncoderOutput(NamedTuple):
    states: torch.Tensor  # (B, S, H) hidden state after each source token
    final: torch.Tensor  # (B, H) state after the last non-pad token: the single context vector
    mask: torch.Tensor  # (B, S) True on real tokens, False on padding
    keys: torch.Tensor | None  # (B, S, A) U h_j, computed once per source for the attention


class Encoder(nn.Module):
    """Embed the source and run a GRU over it; right padding is never read into the final state."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.pad_id = config.pad_id
        self.embed = nn.Embedding(config.vocab_size, config.emb_size, padding_idx=config.pad_id)
        self.gru = nn.GRU(config.emb_size, config.hidden_size, batch_first=True)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = src != self.pad_id  # (B, S)
        lengths = mask.sum(dim=1)  # (B,)
        if (lengths == 0).any():
            raise ValueError("every source sequence needs at least one non-pad token")
        states, _ = self.gru(self.embed(src))  # (B, S, H)
        # A forward GRU's state at position L-1 has read exactly the L real tokens (padding comes after).
        last = (lengths - 1)[:, None, None].expand(-1, 1, states.size(-1))  # (B, 1, H)
        final = states.gather(1, last).squeeze(1)  # (B, H)
        return states, final, mask


class AdditiveAttention(nn.Module):
    """Bahdanau attention: score(s, h_j) = v^T tanh(W s + U h_j), softmax over real source positions."""

    def __init__(self, query_size: int, key_size: int, attn_size: int):
        super().__init__()
        self.W = nn.Linear(query_size, attn_size, bias=False)
        self.U = nn.Linear(key_size, attn_size, bias=True)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        """U h_j for all positions at once, (B, S, H) -> (B, S, A): it does not change while decoding."""
        return self.U(states)

    def forward(
        self, query: torch.Tensor, states: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query s (B, Hd), states h (B, S, H), keys U h (B, S, A), mask (B, S) -> context (B, H), weights (B, S)."""
        scores = self.v(torch.tanh(self.W(query)[:, None, :] + keys)).squeeze(-1)  # (B, S)
        scores = scores.masked_fill(~mask, float("-inf"))  # padding gets exactly zero weight
        weights = torch.softmax(scores, dim=-1)  # (B, S), sums to 1 over real tokens
        context = torch.bmm(weights[:, None, :], states).squeeze(1)  # (B, H) = sum_j weights_j h_j
        return context, weights


class Decoder(nn.Module):
    """One GRU step per output token, reading [previous token embedding; context] and predicting the next."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        hidden = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, config.emb_size, padding_idx=config.pad_id)
        self.attention = AdditiveAttention(hidden, hidden, config.attn_size) if config.attention else None
        self.cell = nn.GRUCell(config.emb_size + hidden, hidden)
        self.out = nn.Linear(hidden + hidden + config.emb_size, config.vocab_size)

    def step(
        self, prev_tokens: torch.Tensor, state: torch.Tensor, enc: EncoderOutput,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """prev_tokens (B,), state s_{t-1} (B, H) -> emb (B, E), state s_t (B, H), context (B, H), weights.

        weights (B, S) are the attention over source positions (None without attention).
        """
        emb = self.embed(prev_tokens)  # (B, E)
        if self.attention is None:
            context, weights = enc.final, None  # the same vector at every step
        else:
            context, weights = self.attention(state, enc.states, enc.keys, enc.mask)  # (B, H), (B, S)
        state = self.cell(torch.cat([emb, context], dim=-1), state)  # (B, H)
        return emb, state, context, weights

    def readout(self, emb: torch.Tensor, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Next-token logits from [s_t; context; previous embedding], (..., H+H+E) -> (..., V)."""
        return self.out(torch.cat([state, context, emb], dim=-1))


class Seq2Seq(nn.Module):
    """GRU encoder + GRU decoder; the decoder starts from the encoder's final state."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, src: torch.Tensor) -> EncoderOutput:
        """src (B, S) right-padded -> EncoderOutput (states, final, mask, attention keys)."""
        if src.dim() != 2:
            raise ValueError(f"src must be (batch, source_len) token ids, got shape {tuple(src.shape)}")
        states, final, mask = self.encoder(src)
        attention = self.decoder.attention
        keys = attention.project_keys(states) if attention is not None else None
        return EncoderOutput(states, final, mask, keys)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the decoder reads the true previous token. src (B, S), tgt_in (B, T) -> (B, T, V)."""
        if tgt_in.dim() != 2 or tgt_in.size(0) != src.size(0):
            raise ValueError(f"tgt_in must be (batch={src.size(0)}, target_len), got {tuple(tgt_in.shape)}")
        enc = self.encode(src)
        state = enc.final
        steps = []
        for t in range(tgt_in.size(1)):
            emb, state, context, _ = self.decoder.step(tgt_in[:, t], state, enc)
            steps.append((emb, state, context))
        emb, states, contexts = (torch.stack(parts, dim=1) for parts in zip(*steps, strict=True))  # (B, T, .) each
        return self.decoder.readout(emb, states, contexts)  # (B, T, V), one matmul for all steps

    @torch.no_grad()
    def greedy_decode(
        self, src: torch.Tensor, max_len: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feed back the argmax token from BOS until every row has emitted EOS or max_len tokens exist.

        Returns tokens (B, T_out) with PAD after each row's EOS, and the attention weights
        (B, T_out, S) (None without attention). T_out <= max_len (default config.max_output_len).
        """
        max_len = self.config.max_output_len if max_len is None else max_len
        if not 1 <= max_len <= self.config.max_output_len:
            raise ValueError(f"max_len must be in [1, max_output_len={self.config.max_output_len}], got {max_len}")
        cfg = self.config
        enc = self.encode(src)
        state = enc.final
        prev = torch.full((src.size(0),), cfg.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        tokens, weights = [], []
        for _ in range(max_len):
            emb, state, context, step_weights = self.decoder.step(prev, state, enc)
            logits = self.decoder.readout(emb, state, context)  # (B, V)
            prev = logits.argmax(dim=-1).masked_fill(done, cfg.pad_id)  # (B,)
            tokens.append(prev)
            if step_weights is not None:
                weights.append(step_weights.masked_fill(done[:, None], 0.0))
            done = done | (prev == cfg.eos_id)
            if done.all():
                break
        tokens = torch.stack(tokens, dim=1)  # (B, T_out)
        return tokens, (torch.stack(weights, dim=1) if weights else None)  # (B, T_out, S)


def teacher_forcing_loss(
    model: Seq2Seq, inputs: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of model(src, tgt_in) against tgt_out, ignoring PAD: the loss_fn for minimodels.training.loop."""
    src, tgt_in = inputs
    return token_cross_entropy(model(src, tgt_in), targets, ignore_index=model.config.pad_id)  # logits (B, T, V)
