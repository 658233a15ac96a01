"""Mixture of experts: routing, dispatch against a per-token loop, the load-balancing loss by hand and
against Hugging Face's load_balancing_loss_func, load statistics, and the loss wiring in the model."""

import pytest
import torch
import torch.nn.functional as F
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

from minimodels.layers.moe import MoE, load_balancing_loss, route
from minimodels.models.llama import Llama, LlamaConfig, llama_loss


def test_aux_loss_by_hand_two_experts_two_tokens_top1():
    # token 0: probabilities (3/4, 1/4); token 1: (0.6, 0.4). Both go to expert 0 with top-1.
    logits = torch.log(torch.tensor([[3.0, 1.0], [1.5, 1.0]]))
    # f = (2/2, 0/2) = (1, 0); P = ((0.75 + 0.6) / 2, (0.25 + 0.4) / 2) = (0.675, 0.325)
    # loss = n_experts * sum_e f_e P_e = 2 * (1 * 0.675 + 0 * 0.325) = 1.35
    assert load_balancing_loss(logits, n_experts=2, top_k=1).item() == pytest.approx(1.35, abs=1e-6)


def test_aux_loss_by_hand_three_experts_top2_counts_slots_per_token():
    # token 0: (0.5, 0.3, 0.2) -> experts {0, 1}; token 1: (0.2, 0.3, 0.5) -> experts {2, 1}
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]]))
    # f = counts / tokens = (1, 2, 1) / 2 = (0.5, 1, 0.5)  (sums to top_k = 2, as in Hugging Face)
    # P = (0.35, 0.3, 0.35); loss = 3 * (0.5 * 0.35 + 1 * 0.3 + 0.5 * 0.35) = 3 * 0.65 = 1.95
    assert load_balancing_loss(logits, n_experts=3, top_k=2).item() == pytest.approx(1.95, abs=1e-6)


def test_aux_loss_of_a_perfectly_even_router_is_top_k():
    logits = torch.zeros(8, 4)
    logits[torch.arange(8), torch.arange(8) % 4] = 5.0  # each expert first for 2 of the 8 tokens
    logits[torch.arange(8), (torch.arange(8) + 1) % 4] = 4.0
    # each expert gets 4 of the 16 slots: f_e = 4 / 8 tokens = 0.5; P_e = 1/4 by symmetry; 4 * 4 * 0.125 = 2
    assert load_balancing_loss(logits, 4, 2).item() == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("n_experts, top_k", [(4, 1), (4, 2), (8, 2), (8, 3)])
def test_aux_loss_equals_hf_load_balancing_loss_func(n_experts, top_k):
    torch.manual_seed(n_experts + top_k)
    per_layer = tuple(torch.randn(37, n_experts) * 2 for _ in range(3))  # 3 layers of 37 tokens
    expected = load_balancing_loss_func(per_layer, n_experts, top_k)
    tol = dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(load_balancing_loss(per_layer, n_experts, top_k), expected, **tol)
    torch.testing.assert_close(load_balancing_loss(per_layer[0], n_experts, top_k),
                               load_balancing_loss_func(per_layer[:1], n_experts, top_k), **tol)


def test_route_weights_are_the_renormalized_top_k_probabilities():
    torch.manual_seed(0)
    logits = torch.randn(50, 6)
    weights, experts = route(logits, 2)
    torch.testing.assert_close(weights.sum(-1), torch.ones(50))
    probs = torch.softmax(logits, -1)
    chosen = probs.gather(1, experts)
    torch.testing.assert_close(weights, chosen / chosen.sum(-1, keepdim=True))
    assert (chosen[:, 0] >= probs.max(-1).values).all()  # the best expert is first
    assert route(logits, 1)[0].eq(1.0).all()  # top-1: weight one


def test_moe_dispatch_equals_a_naive_per_token_loop():
    torch.manual_seed(0)
    moe = MoE(dim=12, hidden=20, n_experts=5, top_k=2)
    x = torch.randn(3, 7, 12)
    out = moe(x)
    expected = torch.zeros(21, 12)
    flat = x.reshape(-1, 12)
    for n in range(flat.size(0)):  # the loop the module avoids
        probs = torch.softmax(flat[n] @ moe.router.weight.T, -1)
        top = torch.topk(probs, 2)
        for w, e in zip(top.values / top.values.sum(), top.indices, strict=True):
            ffn = moe.experts[int(e)]
            expected[n] += w * ffn.down_proj(F.silu(ffn.gate_proj(flat[n])) * ffn.up_proj(flat[n]))
    torch.testing.assert_close(out, expected.view(3, 7, 12), rtol=1e-5, atol=1e-6)


def test_moe_keeps_per_expert_load_statistics():
    torch.manual_seed(1)
    moe = MoE(dim=8, hidden=16, n_experts=4, top_k=2)
    x = torch.randn(2, 10, 8)
    moe(x)
    # by hand: each token's two most probable experts under softmax(x W_router^T), counted per expert
    probs = torch.softmax(x.reshape(-1, 8) @ moe.router.weight.T, dim=-1)  # (20, 4)
    expected = torch.zeros(4, dtype=torch.long)
    for token_probs in probs:
        for e in torch.topk(token_probs, 2).indices.tolist():
            expected[e] += 1
    assert torch.equal(moe.expert_counts, expected) and expected.sum() == 2 * 20
    moe(x)
    assert torch.equal(moe.expert_counts_total, 2 * expected)
    moe.reset_stats()
    assert moe.expert_counts_total.sum() == 0
    torch.testing.assert_close(moe.aux_loss(), load_balancing_loss_func((moe.router_logits,), 4, 2))


def test_aux_loss_trains_the_router():
    torch.manual_seed(2)
    moe = MoE(dim=8, hidden=16, n_experts=4, top_k=1)
    moe(torch.randn(1, 16, 8))
    moe.aux_loss().backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_llama_exposes_aux_loss_over_all_layers_and_adds_it_to_the_loss():
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=31, dim=16, n_layers=3, n_heads=2, n_experts=4, top_k=2, mlp_hidden=24,
                         router_aux_loss_coef=0.5)
    model = Llama(config)
    ids, targets = torch.randint(0, 31, (2, 9)), torch.randint(0, 31, (2, 9))
    logits = model(ids)
    pooled = load_balancing_loss_func(tuple(layer.mlp.router_logits for layer in model.layers), 4, 2)
    torch.testing.assert_close(model.aux_loss, pooled)
    ce = F.cross_entropy(logits.reshape(-1, 31), targets.reshape(-1))
    torch.testing.assert_close(llama_loss(model, ids, targets), ce + 0.5 * pooled)
    dense = Llama(LlamaConfig(vocab_size=31, dim=16, n_layers=1, n_heads=2))
    dense(ids)
    assert dense.aux_loss is None
    torch.testing.assert_close(llama_loss(dense, ids, targets),
                               F.cross_entropy(dense(ids).reshape(-1, 31), targets.reshape(-1)))


def test_active_parameters_count_only_top_k_experts():
    config = LlamaConfig(vocab_size=31, dim=16, n_layers=2, n_heads=2, n_experts=8, top_k=2, mlp_hidden=24)
    model = Llama(config)
    per_expert = 3 * 16 * 24
    assert model.num_parameters() - model.num_parameters(active=True) == 2 * 6 * per_expert
    assert sum(p.numel() for p in model.layers[0].mlp.experts[0].parameters()) == per_expert


def test_moe_rejects_top_k_above_experts():
    with pytest.raises(ValueError, match="1 <= top_k <= n_experts"):
        MoE(8, 16, n_experts=2, top_k=3)
