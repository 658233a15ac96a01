"""LlamaConfig validation (each rule raises ValueError naming the field), defaults, and model basics."""

import pytest
import torch

from minimodels import load_checkpoint, save_checkpoint
from minimodels.layers.gqa import GroupedQueryAttention
from minimodels.models.llama import Llama, LlamaConfig, llama_loss


@pytest.mark.parametrize("overrides, message", [
    ({"dim": 30, "n_heads": 4}, r"LlamaConfig\.dim=30: must be divisible by n_heads=4"),
    ({"n_heads": 4, "n_kv_heads": 3}, r"LlamaConfig\.n_kv_heads=3: must divide n_heads=4"),
    ({"dim": 24, "n_heads": 8}, r"LlamaConfig\.head_dim=3: must be even: RoPE"),
    ({"head_dim": 5}, r"LlamaConfig\.head_dim=5: must be even"),
    ({"sliding_window": 0}, r"LlamaConfig\.sliding_window=0: must be None or an int >= 1"),
    ({"n_experts": 2, "top_k": 3}, r"LlamaConfig\.top_k=3: cannot exceed n_experts=2"),
    ({"n_experts": 4, "top_k": 0}, r"LlamaConfig\.top_k=0: must be a positive int"),
    ({"n_experts": -1}, r"LlamaConfig\.n_experts=-1: must be None, 0 \(dense\) or a positive int"),
    ({"vocab_size": 0}, r"LlamaConfig\.vocab_size=0: must be a positive int"),
    ({"dim": -8}, r"LlamaConfig\.dim=-8: must be a positive int"),
    ({"n_layers": 0}, r"LlamaConfig\.n_layers=0: must be a positive int"),
    ({"n_heads": 0}, r"LlamaConfig\.n_heads=0: must be a positive int"),
    ({"n_kv_heads": 0}, r"LlamaConfig\.n_kv_heads=0: must be a positive int"),
    ({"mlp_hidden": 0}, r"LlamaConfig\.mlp_hidden=0: must be a positive int"),
    ({"max_seq_len": 0}, r"LlamaConfig\.max_seq_len=0: must be a positive int"),
    ({"rope_theta": 0.0}, r"LlamaConfig\.rope_theta=0\.0: must be > 0"),
    ({"norm_eps": -1e-5}, r"LlamaConfig\.norm_eps=-1e-05: must be > 0"),
    ({"router_aux_loss_coef": -0.1}, r"LlamaConfig\.router_aux_loss_coef=-0\.1: must be >= 0"),
    ({"dropout": 1.0}, r"LlamaConfig\.dropout=1\.0: must be in \[0, 1\)"),
    ({"use_kernels": True, "dropout": 0.1}, r"LlamaConfig\.use_kernels=True: the Triton attention kernel has no "
                                            r"dropout; set dropout=0 \(got 0\.1\)"),
    ({"use_kernels": True, "head_dim": 8}, r"LlamaConfig\.head_dim=8: must be one of \(16, 32, 64, 128\) with "
                                           r"use_kernels=True"),
    ({"use_kernels": True, "dim": 96, "n_heads": 4}, r"LlamaConfig\.head_dim=24: must be one of \(16, 32, 64, 128\)"),
])
def test_config_rejects_impossible_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig(**overrides)


def test_config_defaults():
    config = LlamaConfig(dim=96, n_heads=6)
    assert config.n_kv_heads == 6 and config.head_dim == 16
    assert config.mlp_hidden == 256  # 8/3 * 96 = 256, a multiple of 32
    assert not config.is_moe and not LlamaConfig(n_experts=0).is_moe and LlamaConfig(n_experts=4).is_moe
    assert LlamaConfig(dim=20, n_heads=4, head_dim=8).head_dim == 8  # explicit head_dim: dim need not divide


def test_attention_rejects_bad_head_counts():
    with pytest.raises(ValueError, match="n_kv_heads=3 must divide n_heads=4"):
        GroupedQueryAttention(32, 4, 3)
    with pytest.raises(ValueError, match="dim=30 must be divisible by n_heads=4"):
        GroupedQueryAttention(30, 4)
    with pytest.raises(ValueError, match="window must be >= 1"):
        GroupedQueryAttention(32, 4, window=0)
    with pytest.raises(ValueError, match="dropout=0.1 cannot be used with use_kernels=True"):
        GroupedQueryAttention(64, 4, dropout=0.1, use_kernels=True)


def test_kernel_switch_accepts_the_kernel_head_dims():
    for head_dim in (16, 32, 64, 128):
        assert LlamaConfig(dim=64, n_heads=2, head_dim=head_dim, use_kernels=True).head_dim == head_dim
    assert LlamaConfig(dim=64, n_heads=8, use_kernels=False).head_dim == 8  # any even head dim without kernels


def test_model_shapes_tied_weights_and_bad_input():
    model = Llama(LlamaConfig(vocab_size=53, dim=32, n_heads=4, n_kv_heads=1, tie_embeddings=True))
    logits = model(torch.randint(0, 53, (3, 11)))
    assert logits.shape == (3, 11, 53)
    assert model.lm_head.weight is model.embed.weight
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, time\)"):
        model(torch.zeros(5, dtype=torch.long))


def test_gqa_shrinks_key_value_projections():
    model = Llama(LlamaConfig(dim=32, n_heads=8, n_kv_heads=2))
    attn = model.layers[0].attn
    assert attn.q_proj.weight.shape == (32, 32) and attn.k_proj.weight.shape == (8, 32)
    assert all(m.bias is None for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, dim=16, n_heads=2, sliding_window=3, n_experts=3, top_k=2)
    model = Llama(config).eval()
    ids = torch.randint(0, 40, (1, 9))
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def test_training_steps_reduce_the_loss_with_dropout_window_and_experts():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=20, dim=32, n_heads=4, n_kv_heads=2, sliding_window=4, n_experts=4, top_k=2,
                         dropout=0.1, router_aux_loss_coef=0.01)
    model = Llama(config).train()
    ids = torch.randint(0, 20, (4, 17))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = llama_loss(model, inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert model.layers[0].mlp.router.weight.grad.abs().sum() > 0


def test_out_of_vocabulary_ids_are_named():
    model = Llama(LlamaConfig(vocab_size=20, dim=16, n_heads=2))
    with pytest.raises(ValueError, match=r"input_ids must be token ids in \[0, vocab_size=20\), got ids from 3 to 20"):
        model(torch.tensor([[3, 20]]))
