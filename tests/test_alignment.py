"""Alignment losses against formulas written out in the test, and the modules' behaviour on toy data.

trl 1.16 no longer ships PPOTrainer; the PPO terms below follow the formulas of its PPO trainer (v0.x:
per-token KL reward, GAE with returns before whitening, clipped policy and value losses, approx KL as half
the mean squared log-ratio). DPO follows trl's DPOTrainer (sigmoid loss with label smoothing, IPO).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minimodels import Llama, LlamaConfig
from minimodels.alignment import (
    RewardModel,
    bradley_terry_loss,
    dpo_loss,
    entropy_from_logits,
    gae,
    hidden_states,
    kl_penalized_rewards,
    logits_and_hidden_states,
    ppo_losses,
    preference_accuracy,
    sample_completions,
    sequence_logprobs,
    token_logprobs,
    whiten,
)
from minimodels.alignment.rollout import pack
from minimodels.generation.cached import generate_cached


def tiny_llama(seed=0, vocab=32):
    torch.manual_seed(seed)
    return Llama(LlamaConfig(vocab_size=vocab, dim=16, n_layers=1, n_heads=2, max_seq_len=32)).eval()


# ---------------------------------------------------------------- log-probabilities

def test_sequence_logprobs_sum_only_the_completion_tokens():
    model = tiny_llama()
    ids = torch.tensor([[3, 4, 5, 6, 7, 0], [8, 9, 10, 11, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]])
    got = sequence_logprobs(model, ids, mask)
    logits = model(ids)
    expected = []
    for b in range(2):  # a loop over positions, by hand
        total = 0.0
        for t in range(1, ids.size(1)):
            if mask[b, t]:
                total += torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item()
        expected.append(total)
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    per_token = token_logprobs(model, ids, mask)
    assert torch.all(per_token[mask == 0] == 0)


def test_padding_and_prompt_do_not_change_the_completion_logprob():
    model = tiny_llama()
    ids = torch.tensor([[3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1]])
    padded = torch.tensor([[3, 4, 5, 6, 0, 0, 0]])
    padded_mask = torch.tensor([[0, 0, 1, 1, 0, 0, 0]])
    assert sequence_logprobs(model, ids, mask).item() == pytest.approx(
        sequence_logprobs(model, padded, padded_mask).item(), abs=1e-5)


def test_logprob_bad_input():
    model = tiny_llama()
    ids = torch.tensor([[3, 4, 5]])
    with pytest.raises(ValueError, match="empty completion"):
        sequence_logprobs(model, ids, torch.zeros_like(ids))
    with pytest.raises(ValueError, match="must match input_ids"):
        sequence_logprobs(model, ids, torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="first token cannot be a completion"):
        sequence_logprobs(model, ids, torch.tensor([[1, 1, 1]]))


# ---------------------------------------------------------------- GAE, whitening, rewards

def gae_by_hand(rewards, values, mask, gamma, lam):
    """One episode per row: the real tokens in order, value 0 after the last one."""
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        steps = [t for t in range(T) if mask[b, t]]
        following = 0.0
        for k in reversed(range(len(steps))):
            t = steps[k]
            next_value = values[b, steps[k + 1]].item() if k + 1 < len(steps) else 0.0
            delta = rewards[b, t].item() + gamma * next_value - values[b, t].item()
            following = delta + gamma * lam * following
            adv[b, t] = following
    return adv, (adv + values) * mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_gae_equals_a_step_by_step_loop_with_ragged_lengths(gamma, lam):
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    mask = torch.zeros(4, 9)
    for b, (start, end) in enumerate([(2, 9), (3, 6), (0, 1), (4, 8)]):  # prompt, completion, padding
        mask[b, start:end] = 1
    adv, ret = gae(rewards, values, mask, gamma, lam)
    adv_ref, ret_ref = gae_by_hand(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, adv_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, ret_ref, atol=1e-5, rtol=1e-5)
    assert torch.all(adv[mask == 0] == 0)


def test_gae_with_lambda_one_and_gamma_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.5, 0.1]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.8, 0.5, 0.9])
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 1.0])


def test_whiten_matches_the_unbiased_masked_formula():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    kept = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    expected = (kept - kept.mean()) / math.sqrt(kept.var(unbiased=True).item() + 1e-8)
    out = whiten(x, mask)
    torch.testing.assert_close(out[mask.bool()], expected, atol=1e-6, rtol=0)
    assert torch.all(out[~mask.bool()] == 0)
    torch.testing.assert_close(whiten(x, mask, shift_mean=False)[mask.bool()], expected + kept.mean())


def test_kl_rewards_put_the_score_on_the_last_real_token():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0], [0.0, -0.5, 0.0, 0.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, 0.0], [0.0, -0.5, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    rewards, kl = kl_penalized_rewards(logp, ref, torch.tensor([2.0, -1.0]), mask, kl_coef=0.1)
    assert kl.tolist() == [[0.0, 0.5, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    assert rewards[0].tolist() == pytest.approx([0.0, -0.05, 0.1 + 2.0, 0.0])
    assert rewards[1].tolist() == pytest.approx([0.0, -1.0, 0.0, 0.0])


def test_kl_is_zero_when_the_policy_is_the_reference():
    model = tiny_llama()
    ids = torch.randint(32, (3, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(3, 8, dtype=torch.long)
    mask[:, 3:] = 1
    logp = token_logprobs(model, ids, mask)
    rewards, kl = kl_penalized_rewards(logp, token_logprobs(model, ids, mask), torch.zeros(3), mask)
    assert torch.all(kl == 0) and torch.all(rewards == 0)
    out = ppo_losses(logp, logp, torch.randn(3, 8), torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(3, 8), mask)
    assert out["approx_kl"].item() == 0.0 and out["clip_fraction"].item() == 0.0


# ---------------------------------------------------------------- PPO losses

def test_ppo_terms_on_fixed_tensors_against_the_formulas():
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    old_logp = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    # ratios e^0.5 (clipped above), e^-0.5 (clipped below), 1 (inside), padding
    logp = torch.tensor([[-0.5, -1.5, -1.0, 5.0]])
    adv = torch.tensor([[1.0, -1.0, 2.0, 9.0]])
    values = torch.tensor([[0.5, 0.0, 1.0, 9.0]])
    old_values = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    out = ppo_losses(logp, old_logp, adv, values, old_values, returns, mask, cliprange=0.2, cliprange_value=0.2,
                     vf_coef=0.1)
    r = [math.exp(0.5), math.exp(-0.5), 1.0]
    pg = [max(-1.0 * r[0], -1.0 * min(r[0], 1.2)), max(1.0 * r[1], 1.0 * max(r[1], 0.8)), max(-2 * r[2], -2 * r[2])]
    assert out["policy_loss"].item() == pytest.approx(sum(pg) / 3, abs=1e-6)
    # value: token 0 moved 0.5 from 0.0, clipped to 0.2: max((0.5-1)^2, (0.2-1)^2) = 0.64
    vf = [max(0.25, 0.64), max(1.0, 1.0), max(1.0, 1.0)]
    assert out["value_loss"].item() == pytest.approx(0.5 * sum(vf) / 3, abs=1e-6)
    assert out["loss"].item() == pytest.approx(sum(pg) / 3 + 0.1 * 0.5 * sum(vf) / 3, abs=1e-6)
    # clipped where the clipped loss is larger: token 0 (ratio > 1.2 with A > 0); token 1: ratio < 0.8 with
    # A < 0, clipped loss 0.8 > e^-0.5 = 0.607, so it counts too
    assert out["clip_fraction"].item() == pytest.approx(2 / 3)
    assert out["value_clip_fraction"].item() == pytest.approx(1 / 3)
    assert out["approx_kl"].item() == pytest.approx(0.5 * (0.25 + 0.25 + 0) / 3)
    assert out["entropy"].item() == pytest.approx((0.5 + 1.5 + 1.0) / 3)


def test_ppo_clipping_inactive_inside_the_trust_region():
    mask = torch.ones(1, 3)
    old = torch.full((1, 3), -1.0)
    logp = old + torch.tensor([[0.05, -0.05, 0.0]])
    adv = torch.tensor([[1.0, -1.0, 0.5]])
    out = ppo_losses(logp, old, adv, torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3), mask)
    expected = (-adv * torch.exp(logp - old)).mean()
    assert out["policy_loss"].item() == pytest.approx(expected.item(), abs=1e-7)
    assert out["clip_fraction"].item() == 0.0


def test_ppo_policy_gradient_is_zero_for_a_clipped_token():
    old = torch.tensor([[-1.0, -1.0]])
    logp = torch.tensor([[-0.5, -1.0]], requires_grad=True)  # token 0 far outside [0.8, 1.2] with A > 0
    out = ppo_losses(logp, old, torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2), torch.zeros(1, 2),
                     torch.zeros(1, 2), torch.ones(1, 2))
    out["policy_loss"].backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[0, 1].item() == pytest.approx(-0.5)


def test_entropy_from_logits_matches_the_definition():
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(entropy_from_logits(logits), -(p * p.log()).sum(-1), atol=1e-6, rtol=0)
    mask = torch.ones(2, 3)
    out = ppo_losses(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3),
                     torch.zeros(2, 3), mask, logits=logits)
    assert out["entropy"].item() == pytest.approx(entropy_from_logits(logits).mean().item(), abs=1e-6)


def test_ppo_bad_input():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="must have one shape"):
        ppo_losses(z, torch.zeros(2, 4), z, z, z, z, torch.ones(2, 3))
    with pytest.raises(ValueError, match="selects no token"):
        ppo_losses(z, z, z, z, z, z, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="cliprange must be >= 0"):
        ppo_losses(z, z, z, z, z, z, torch.ones(2, 3), cliprange=-0.1)
    with pytest.raises(ValueError, match="gamma and lam must be in"):
        gae(z, z, torch.ones(2, 3), gamma=1.5)


# ---------------------------------------------------------------- DPO

def test_dpo_sigmoid_loss_and_rewards_against_the_formula():
    pc, pr = torch.tensor([-5.0, -3.0, -8.0]), torch.tensor([-6.0, -2.0, -8.0])
    rc, rr = torch.tensor([-5.5, -3.0, -7.0]), torch.tensor([-5.5, -3.0, -9.0])
    beta = 0.5
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta)
    for i in range(3):
        margin = (pc[i] - rc[i]) - (pr[i] - rr[i])
        assert losses[i].item() == pytest.approx(math.log1p(math.exp(-beta * margin.item())), abs=1e-6)
        assert chosen[i].item() == pytest.approx(beta * (pc[i] - rc[i]).item())
        assert rejected[i].item() == pytest.approx(beta * (pr[i] - rr[i]).item())


def test_dpo_gradients_against_the_formula():
    pc = torch.tensor([-5.0, -3.0], requires_grad=True)
    pr = torch.tensor([-6.0, -2.0], requires_grad=True)
    rc, rr = torch.tensor([-5.5, -3.5]), torch.tensor([-5.5, -2.5])
    beta = 0.2
    losses, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta)
    losses.sum().backward()
    margin = ((pc - rc) - (pr - rr)).detach()
    # d/dpc of -log sigmoid(beta m) = -beta sigmoid(-beta m); d/dpr = +beta sigmoid(-beta m)
    torch.testing.assert_close(pc.grad, -beta * torch.sigmoid(-beta * margin))
    torch.testing.assert_close(pr.grad, beta * torch.sigmoid(-beta * margin))


def test_dpo_label_smoothing_and_ipo():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-4.0, -6.0, -5.0, -5.0))
    margin = 2.0
    smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.2)
    expected = -0.8 * F.logsigmoid(torch.tensor(0.1 * margin)) - 0.2 * F.logsigmoid(torch.tensor(-0.1 * margin))
    assert smoothed.item() == pytest.approx(expected.item(), abs=1e-6)
    ipo, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type="ipo")
    assert ipo.item() == pytest.approx((margin - 1 / 0.2) ** 2)
    normalized, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type="ipo", chosen_lengths=torch.tensor([2.0]),
                                rejected_lengths=torch.tensor([4.0]))
    assert normalized.item() == pytest.approx((1.0 / 2 - (-1.0) / 4 - 5.0) ** 2)


def test_dpo_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="must have one shape"):
        dpo_loss(x, torch.zeros(2), x, x)
    with pytest.raises(ValueError, match="empty batch"):
        dpo_loss(*(torch.zeros(0) for _ in range(4)))
    with pytest.raises(ValueError, match="loss_type must be one of"):
        dpo_loss(x, x, x, x, loss_type="hinge2")


# ---------------------------------------------------------------- reward model and rollouts

def test_reward_model_learns_a_separable_preference():
    """Preferred completions contain token 5, rejected ones token 6: accuracy on held-out pairs -> 1."""
    torch.manual_seed(0)
    rm = RewardModel(tiny_llama(seed=1))
    g = torch.Generator().manual_seed(2)

    def pairs(n):
        prompt = torch.randint(7, 32, (n, 4), generator=g)
        filler = torch.randint(7, 32, (n, 3), generator=g)
        chosen = torch.cat([prompt, filler, torch.full((n, 1), 5)], 1)
        return chosen, torch.cat([prompt, filler, torch.full((n, 1), 6)], 1)

    train_c, train_r = pairs(32)
    test_c, test_r = pairs(32)
    rm.eval()
    with torch.no_grad():
        before = preference_accuracy(rm(test_c), rm(test_r))
    optimizer = torch.optim.AdamW(rm.parameters(), lr=3e-3)
    rm.train()
    for _ in range(40):
        loss = bradley_terry_loss(rm(train_c), rm(train_r))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rm.eval()
    with torch.no_grad():
        after = preference_accuracy(rm(test_c), rm(test_r))
    assert before == 0.0  # a zero-initialized head scores every pair equal
    assert after == 1.0


def test_reward_model_reads_the_last_real_token():
    rm = RewardModel(tiny_llama())
    torch.nn.init.normal_(rm.head.weight)
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    padded = rm(ids, torch.tensor([[1, 1, 1, 0, 0]]))
    trimmed = rm(ids[:, :3])
    assert padded.item() == pytest.approx(trimmed.item(), abs=1e-5)
    with pytest.raises(ValueError, match="at least one real token"):
        rm(ids, torch.zeros_like(ids))


def test_bradley_terry_loss_formula():
    c, r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(2.0))) / 2
    assert bradley_terry_loss(c, r).item() == pytest.approx(expected)


def test_rollouts_pack_prompts_and_completions():
    model = tiny_llama()
    rollout = sample_completions(model, [[1, 2, 3], [4, 5]], max_new_tokens=4, seed=0)
    assert rollout.input_ids.shape == (2, 7)
    assert rollout.completion_mask.sum(1).tolist() == [4, 4]
    assert rollout.input_ids[1, :2].tolist() == [4, 5] and rollout.completion_mask[1, :2].tolist() == [0, 0]
    assert rollout.input_ids[0, 3:].tolist() == rollout.completions[0]
    with pytest.raises(ValueError, match="are empty"):
        pack([[1]], [[]])
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        sample_completions(model, [[1]], max_new_tokens=0)


def test_equal_length_prompts_are_sampled_in_one_batch_reproducibly():
    model = tiny_llama()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8], [9, 10]]
    first = sample_completions(model, prompts, max_new_tokens=5, seed=3)
    again = sample_completions(model, prompts, max_new_tokens=5, seed=3)
    assert first.completions == again.completions
    # the group of length-3 prompts starts at index 0: the same as sampling that group alone with seed 3 + 0
    alone = generate_cached(model, torch.tensor([[1, 2, 3], [6, 7, 8]]), 5, seed=3)
    assert [first.completions[0], first.completions[2]] == alone[:, 3:].tolist()
    alone = generate_cached(model, torch.tensor([[4, 5], [9, 10]]), 5, seed=3 + 1)
    assert [first.completions[1], first.completions[3]] == alone[:, 2:].tolist()


def test_completions_stop_after_the_first_of_several_stop_ids():
    model = tiny_llama()
    free = sample_completions(model, [[1, 2, 3]], max_new_tokens=12, seed=0).completions[0]
    stops = {free[4], free[7]}
    first_stop = min(i for i, t in enumerate(free) if t in stops)
    cut = sample_completions(model, [[1, 2, 3]], max_new_tokens=12, seed=0, stop_id=stops).completions[0]
    assert cut == free[: first_stop + 1]
    one = sample_completions(model, [[1, 2, 3]], max_new_tokens=12, seed=0, stop_id=free[7]).completions[0]
    assert one == free[: free.index(free[7]) + 1]
    with pytest.raises(TypeError, match="stop_id must be an int or a collection"):
        sample_completions(model, [[1]], max_new_tokens=2, stop_id=["."])


def test_logits_and_hidden_states_come_from_one_forward():
    model = tiny_llama()
    ids = torch.randint(32, (2, 6), generator=torch.Generator().manual_seed(0))
    logits, h = logits_and_hidden_states(model, ids)
    torch.testing.assert_close(logits, model(ids))
    torch.testing.assert_close(h, hidden_states(model, ids))
    torch.testing.assert_close(model.lm_head(h), logits)  # the final norm's output is what lm_head reads
