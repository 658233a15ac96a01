"""Sparse mixture of experts (Mixtral): a router sends each token to top_k of n_experts SwiGLU experts.

    logits = router(x)                      # (N, E) one score per expert
    p = softmax(logits); w, e = topk(p, k)  # the k best experts of each token
    w = w / w.sum()                         # renormalized over the chosen experts (Mixtral)
    y = sum_j w_j * expert_{e_j}(x)

Only k experts run per token, so the parameters grow with E while the compute per token stays that of k
experts. Left alone, a router collapses onto a few experts; the load-balancing loss pushes it back to an
even spread (see `load_balancing_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minimodels.layers.mlp import SwiGLU


def route(router_logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing: weights (N, k) float32 summing to one per token, and expert indices (N, k)."""
    probs = F.softmax(router_logits.float(), dim=-1)  # (N, E), float32 like Mixtral
    weights, experts = torch.topk(probs, top_k, dim=-1)  # (N, k), best first
    return weights / weights.sum(dim=-1, keepdim=True), experts


def load_balancing_loss(
    router_logits: torch.Tensor | Sequence[torch.Tensor], n_experts: int, top_k: int
) -> torch.Tensor:
    """Switch / Mixtral auxiliary loss: n_experts * sum_e f_e * P_e, the definition of Hugging Face's
    `load_balancing_loss_func` (without attention mask), which this function matches exactly.

    router_logits: (N, E), or one (N_l, E) tensor per layer; layers are pooled as if their tokens were
    concatenated (as Hugging Face does: one f and one P for the whole model, not a mean of per-layer losses).
    f_e = (number of top-k slots routed to e) / (number of tokens): Hugging Face divides by tokens, not
    token-slots, so sum_e f_e = top_k (for top_k = 1 both readings agree). P_e = mean router probability
    of e. Only P carries a gradient. A perfectly even router gives top_k; a collapsed one gives up to
    n_experts (each f_e <= 1 and sum_e P_e = 1, so sum_e f_e P_e <= 1).
    """
    if not isinstance(router_logits, torch.Tensor):
        router_logits = torch.cat([logits.reshape(-1, n_experts) for logits in router_logits], dim=0)
    probs = F.softmax(router_logits.float(), dim=-1)  # (N, E)
    chosen = torch.topk(probs, top_k, dim=-1).indices  # (N, k)
    n_tokens = probs.size(0)
    f = torch.bincount(chosen.reshape(-1), minlength=n_experts).float() / n_tokens  # (E,) sums to top_k
    P = probs.mean(dim=0)  # (E,) sums to 1
    return n_experts * torch.sum(f * P)


class MoE(nn.Module):
    """x (B, T, dim) -> (B, T, dim): each token through the weighted sum of its top_k SwiGLU experts.

    After each forward the module keeps `router_logits` (N, E) (for the auxiliary loss) and
    `expert_counts` (E,) (token-slots each expert received; `expert_counts_total` sums them over forwards).
    """

    def __init__(self, dim: int, hidden: int, n_experts: int, top_k: int = 2):
        super().__init__()
        if n_experts < 1 or not 1 <= top_k <= n_experts:
            raise ValueError(f"MoE: n_experts >= 1 and 1 <= top_k <= n_experts, got {n_experts}, {top_k}")
        self.n_experts, self.top_k = n_experts, top_k
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(dim, hidden) for _ in range(n_experts))
        self.router_logits: torch.Tensor | None = None
        zeros = torch.zeros(n_experts, dtype=torch.long)
        self.register_buffer("expert_counts", zeros.clone(), persistent=False)
        self.register_buffer("expert_counts_total", zeros.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        h = x.reshape(-1, C)  # (N, C)
        logits = self.router(h)  # (N, E)
        weights, experts = route(logits, self.top_k)  # (N, k) each
        flat_experts = experts.reshape(-1)  # (N * k,) slot s belongs to token s // k
        order = torch.argsort(flat_experts, stable=True)  # slots grouped by expert
        counts = torch.bincount(flat_experts, minlength=self.n_experts)  # (E,)
        flat_weights = weights.reshape(-1, 1).to(h.dtype)  # (N * k, 1)
        out = torch.zeros_like(h)
        start = 0
        for e, count in enumerate(counts.tolist()):  # a loop over experts, never over tokens
            if count:
                slots = order[start:start + count]  # (count,)
                tokens = slots // self.top_k
                out.index_add_(0, tokens, self.experts[e](h[tokens]) * flat_weights[slots])
                start += count
        self.router_logits = logits
        self.expert_counts = counts.detach()
        self.expert_counts_total += self.expert_counts
        return out.view(B, T, C)

    def aux_loss(self) -> torch.Tensor:
        """Load-balancing loss of this layer's last forward."""
        if self.router_logits is None:
            raise RuntimeError("aux_loss needs a forward pass first")
        return load_balancing_loss(self.router_logits, self.n_experts, self.top_k)

    def reset_stats(self) -> None:
        self.expert_counts_total.zero_()
