"""PPO for language models (Schulman et al. 2017, arXiv:1707.06347), as trl's PPOTrainer computes it.

A rollout gives, per completion token t: the policy's log-probability when sampled (old_logprobs), the
reference model's (ref_logprobs), the value head's estimate (old_values) and one scalar score per sequence
from the reward model. The per-token reward is the KL penalty -kl_coef * (logp - ref_logp), with the score
added at the last generated token (Ziegler et al. 2019, arXiv:1909.08593). Generalized advantage estimation
(GAE, Schulman et al. 2015, arXiv:1506.02438) turns rewards and values into advantages; the losses then clip
the probability ratio (policy) and the value change (value head) to stay near the rollout's policy.
"""

from __future__ import annotations

import torch

from minimodels.alignment.checks import check_mask, check_same_shape, check_tensor


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1."""
    return (x * mask).sum() / mask.sum()


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over the masked positions (Bessel-corrected by default, as trl's masked_var)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError("whiten needs at least 2 masked values for an unbiased variance")
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked positions (zero elsewhere); shift_mean=False keeps the mean."""
    m = check_mask("whiten", mask, tuple(x.shape))
    mean, var = masked_mean(x, m), masked_var(x, m)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * m


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last 1 in each row of a (B, T) mask."""
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, -1).max(dim=1).values


def kl_penalized_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, scores: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, T): -kl_coef * (logp - ref_logp) on completion tokens, plus the score at the last.

    Returns (rewards, kl) where kl = logp - ref_logp on the completion (zero elsewhere).
    """
    shape = check_same_shape("kl_penalized_rewards", logprobs=logprobs, ref_logprobs=ref_logprobs)
    m = check_mask("kl_penalized_rewards", mask, shape)
    check_tensor("kl_penalized_rewards", "scores", scores, dim=1)
    if scores.size(0) != shape[0]:
        raise ValueError(f"kl_penalized_rewards: scores must have one value per row ({shape[0]}), got {scores.size(0)}")
    if kl_coef < 0:
        raise ValueError(f"kl_penalized_rewards: kl_coef must be >= 0, got {kl_coef}")
    kl = (logprobs - ref_logprobs) * m
    rewards = -kl_coef * kl
    rows = torch.arange(shape[0], device=rewards.device)
    rewards[rows, last_token_index(m)] += scores.to(rewards.dtype)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns for (B, T) tensors; positions outside mask count as 0.

    delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lam A_{t+1}, with V and A after a
    sequence's last real token equal to 0 (the episode ends there). returns = advantages + values, computed
    before any whitening of the advantages.
    """
    shape = check_same_shape("gae", rewards=rewards, values=values)
    m = check_mask("gae", mask, shape)
    if not 0 <= gamma <= 1 or not 0 <= lam <= 1:
        raise ValueError(f"gae: gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    values, rewards = values * m, rewards * m
    T = shape[1]
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])  # A_{t+1}
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        next_real = m[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value * next_real - values[:, t]
        running = (delta + gamma * lam * running * next_real) * m[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * m


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last dim: logsumexp(l) - sum(softmax(l) * l)."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


def ppo_losses(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
               old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange: float = 0.2,
               cliprange_value: float = 0.2, vf_coef: float = 0.1, logits: torch.Tensor | None = None) -> dict:
    """The clipped PPO objective over the completion tokens (all inputs (B, T); logits (B, T, V) optional).

    Returns a dict: loss = policy_loss + vf_coef * value_loss, policy_loss, value_loss, clip_fraction (share
    of tokens whose ratio was clipped), value_clip_fraction, approx_kl (0.5 mean (logp - old_logp)^2) and
    entropy (mean entropy of `logits` when given, else the sample estimate -mean(logp)).
    """
    shape = check_same_shape("ppo_losses", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages,
                             values=values, old_values=old_values, returns=returns)
    m = check_mask("ppo_losses", mask, shape)
    for name, value in (("cliprange", cliprange), ("cliprange_value", cliprange_value), ("vf_coef", vf_coef)):
        if value < 0:
            raise ValueError(f"ppo_losses: {name} must be >= 0, got {value}")
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    policy_loss = masked_mean(torch.maximum(pg_losses, pg_losses_clipped), m)
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf_losses = (values - returns) ** 2
    vf_losses_clipped = (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.maximum(vf_losses, vf_losses_clipped), m)
    if logits is not None:
        if tuple(logits.shape[:2]) != shape:
            raise ValueError(f"ppo_losses: logits must be (B, T, V) with (B, T) = {shape}, got {tuple(logits.shape)}")
        entropy = masked_mean(entropy_from_logits(logits), m)
    else:
        entropy = -masked_mean(logprobs, m)
    return {
        "loss": policy_loss + vf_coef * value_loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "clip_fraction": masked_mean((pg_losses_clipped > pg_losses).float(), m),
        "value_clip_fraction": masked_mean((vf_losses_clipped > vf_losses).float(), m),
        "approx_kl": 0.5 * masked_mean(log_ratio ** 2, m),
        "entropy": entropy,
    }
