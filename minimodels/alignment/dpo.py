"""Direct preference optimization (Rafailov et al. 2023, arXiv:2305.18290), as trl's DPOTrainer computes it.

The policy is its own reward model: r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)). For a preferred
completion y_w and a rejected y_l the Bradley-Terry likelihood of the preference gives the loss
-log sigmoid(r_w - r_l), with no sampling and no value head. Options: label smoothing (conservative DPO,
the preference label flipped with probability epsilon) and IPO (Azar et al. 2023, arXiv:2310.12036), a squared
loss towards a margin of 1 / (2 beta) that does not push the margin to infinity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minimodels.alignment.checks import check_same_shape, check_tensor

LOSS_TYPES = ("sigmoid", "ipo")


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_lengths: torch.Tensor | None = None, rejected_lengths: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen_rewards, rejected_rewards), each (B,), from sequence log-probabilities (B,).

    sigmoid: -(1 - eps) logsigmoid(beta * delta) - eps logsigmoid(-beta * delta), delta = the difference of
    the policy's and the reference's chosen-minus-rejected log-ratios. ipo: (delta - 1 / (2 beta))^2; given
    completion lengths, each log-ratio is first divided by its length (trl's normalization).
    Rewards are beta * (policy - reference) log-probabilities, detached.
    """
    check_same_shape("dpo_loss", policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    check_tensor("dpo_loss", "policy_chosen_logps", policy_chosen_logps, dim=1)
    if policy_chosen_logps.numel() == 0:
        raise ValueError("dpo_loss: empty batch")
    if not beta > 0:
        raise ValueError(f"dpo_loss: beta must be > 0, got {beta}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"dpo_loss: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo_loss: label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    if loss_type == "sigmoid":
        delta = chosen_logratios - rejected_logratios
        losses = (-(1 - label_smoothing) * F.logsigmoid(beta * delta)
                  - label_smoothing * F.logsigmoid(-beta * delta))
    else:
        if (chosen_lengths is None) != (rejected_lengths is None):
            raise ValueError("dpo_loss: give both chosen_lengths and rejected_lengths, or neither")
        if chosen_lengths is not None:
            check_same_shape("dpo_loss", chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                             policy_chosen_logps=policy_chosen_logps)
            chosen_logratios = chosen_logratios / chosen_lengths.clamp(min=1)
            rejected_logratios = rejected_logratios / rejected_lengths.clamp(min=1)
        losses = (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards
