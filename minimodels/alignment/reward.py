"""A reward model from preference pairs: the LM backbone with a scalar head read at the last real token.

Trained with the Bradley-Terry likelihood of the human (here: programmatic) preferences,
P(chosen > rejected) = sigmoid(r_chosen - r_rejected), as in Stiennon et al. 2020 (arXiv:2009.01325) and
InstructGPT. Only score differences matter, so the scale and offset of r are free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minimodels.alignment.checks import check_same_shape, check_tensor
from minimodels.alignment.ppo import last_token_index

FINAL_NORMS = ("norm", "ln_f", "norm_f")  # the module whose output feeds lm_head in Llama, GPT, Mamba


def final_norm(model: nn.Module) -> nn.Module:
    for name in FINAL_NORMS:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return module
    raise TypeError(f"{type(model).__name__} has none of {FINAL_NORMS}: cannot read its last hidden states")


def logits_and_hidden_states(model: nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, T, V), hidden (B, T, dim)) from one forward: the hidden states are the final norm's output,
    read with a forward hook, so a policy and its value head share one pass (as trl's value-head models do)."""
    seen = {}
    handle = final_norm(model).register_forward_hook(lambda module, args, out: seen.__setitem__("h", out))
    try:
        logits = model(input_ids)
    finally:
        handle.remove()
    return logits, seen["h"]


def hidden_states(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T, dim): the final normalized hidden states, read with a hook on the model's final norm."""
    return logits_and_hidden_states(model, input_ids)[1]


class RewardModel(nn.Module):
    """scores = model(input_ids, attention_mask) -> (B,): a linear head on the last real token's hidden state."""

    def __init__(self, backbone: nn.Module, dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        config = getattr(backbone, "config", None)
        dim = dim or getattr(config, "dim", None) or getattr(config, "n_embd", None) or getattr(config, "d_model", None)
        if dim is None:
            raise ValueError("RewardModel: give dim, the backbone's hidden width (its config has none)")
        self.head = nn.Linear(dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor("RewardModel", "input_ids", input_ids, dim=2)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        check_same_shape("RewardModel", input_ids=input_ids, attention_mask=attention_mask)
        if not attention_mask.bool().any(dim=1).all():
            raise ValueError("RewardModel: every row needs at least one real token in attention_mask")
        h = hidden_states(self.backbone, input_ids)  # (B, T, dim)
        last = last_token_index(attention_mask)  # (B,)
        return self.head(h[torch.arange(h.size(0), device=h.device), last]).squeeze(-1)  # (B,)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected)."""
    check_same_shape("bradley_terry_loss", chosen_scores=chosen_scores, rejected_scores=rejected_scores)
    if chosen_scores.numel() == 0:
        raise ValueError("bradley_terry_loss: empty batch")
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


def preference_accuracy(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> float:
    """Share of pairs where the chosen completion scores higher."""
    check_same_shape("preference_accuracy", chosen_scores=chosen_scores, rejected_scores=rejected_scores)
    return float((chosen_scores > rejected_scores).float().mean())
