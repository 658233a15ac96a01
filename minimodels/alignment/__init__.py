"""Alignment from preferences (lesson 11): log-probabilities of completions, a reward model, PPO, DPO.

The three stages of InstructGPT (Ouyang et al. 2022, arXiv:2203.02155): supervised fine-tuning, a reward
model trained on preference pairs, then PPO against the reward with a KL penalty to the reference model.
DPO (Rafailov et al. 2023, arXiv:2305.18290) skips the reward model and the sampling loop.
"""

from minimodels.alignment.dpo import dpo_loss
from minimodels.alignment.logprobs import sequence_logprobs, token_logprobs
from minimodels.alignment.ppo import entropy_from_logits, gae, kl_penalized_rewards, masked_mean, ppo_losses, whiten
from minimodels.alignment.reward import (
    RewardModel,
    bradley_terry_loss,
    hidden_states,
    logits_and_hidden_states,
    preference_accuracy,
)
from minimodels.alignment.rollout import Rollout, sample_completions

__all__ = [
    "RewardModel", "Rollout", "bradley_terry_loss", "dpo_loss", "entropy_from_logits", "gae", "hidden_states",
    "kl_penalized_rewards", "logits_and_hidden_states", "masked_mean", "ppo_losses", "preference_accuracy",
    "sample_completions", "sequence_logprobs", "token_logprobs", "whiten",
]
