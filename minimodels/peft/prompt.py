"""Prompt tuning (Lester et al., 2021, arXiv:2104.08691): learn n "virtual token" embeddings that are put in
front of every input; the whole model stays frozen.

    tuned = PromptTuning(model, n_virtual_tokens=16)
    logits = tuned(ids)            # (B, T, V): the logits of the real tokens (the prompt's are dropped)

The prompt starts as the embeddings of randomly drawn vocabulary tokens, which Lester et al. found better
than random vectors. The prompt occupies positions 0..n-1, the real tokens follow at n..n+T-1. It needs to
run the model from embeddings, so it supports the course Llama (embed, rope, layers, norm, lm_head).
"""

from __future__ import annotations

import torch
from torch import nn

from minimodels.peft.params import freeze


class PromptTuning(nn.Module):
    """A frozen course Llama with `n_virtual_tokens` trainable input embeddings prepended to every sequence."""

    def __init__(self, model: nn.Module, n_virtual_tokens: int = 16, seed: int = 0):
        super().__init__()
        missing = [a for a in ("embed", "rope", "layers", "norm", "lm_head") if not hasattr(model, a)]
        if missing:
            raise TypeError(f"PromptTuning needs a course Llama (embed, rope, layers, norm, lm_head); "
                            f"{type(model).__name__} lacks {missing}")
        if not isinstance(n_virtual_tokens, int) or n_virtual_tokens < 1:
            raise ValueError(f"n_virtual_tokens must be an int >= 1, got {n_virtual_tokens!r}")
        self.model = freeze(model)
        self.config = getattr(model, "config", None)
        vocab = model.embed.weight.size(0)
        rows = torch.randint(0, vocab, (n_virtual_tokens,), generator=torch.Generator().manual_seed(seed))
        self.prompt = nn.Parameter(model.embed.weight.detach()[rows.to(model.embed.weight.device)].clone())  # (P, dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time), got {tuple(input_ids.shape)}")
        m = self.model
        B, T = input_ids.shape
        P = self.prompt.size(0)
        x = torch.cat([self.prompt.expand(B, P, -1), m.embed(input_ids)], dim=1)  # (B, P + T, dim)
        cos, sin = m.rope(P + T, 0, device=input_ids.device)  # (P + T, head_dim)
        for i, layer in enumerate(m.layers):
            x = layer(x, cos, sin, None, i)
        return m.lm_head(m.norm(x[:, P:]))  # (B, T, V)
