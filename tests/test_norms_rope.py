"""RMSNorm / LayerNorm against Hugging Face and torch; RoPE's relative-position property and HF layout."""

import math

import pytest
import torch
from transformers import LlamaConfig as HFLlamaConfig
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

from minimodels.layers.norms import LayerNorm, RMSNorm
from minimodels.layers.rope import RotaryEmbedding, apply_rope, rope_inv_freq, rotate_half


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_equals_hf_llama_rmsnorm(dtype):
    torch.manual_seed(0)
    x = (torch.randn(2, 5, 24) * 3 + 1).to(dtype)
    ours, hf = RMSNorm(24, eps=1e-5), LlamaRMSNorm(24, eps=1e-5)
    with torch.no_grad():
        weight = torch.randn(24)
        ours.weight.copy_(weight)
        hf.weight.copy_(weight)
    ours, hf = ours.to(dtype), hf.to(dtype)
    torch.testing.assert_close(ours(x), hf(x), rtol=0, atol=0)


def test_rmsnorm_formula_by_hand():
    x = torch.tensor([[3.0, 4.0]])  # mean of squares 12.5
    expected = x / math.sqrt(12.5)
    torch.testing.assert_close(RMSNorm(2, eps=1e-12)(x), expected)


def test_layernorm_equals_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 16)
    ours, ref = LayerNorm(16, eps=1e-5), torch.nn.LayerNorm(16, eps=1e-5)
    with torch.no_grad():
        for p in (ours.weight, ours.bias, ref.weight, ref.bias):
            p.copy_(torch.arange(16.0) / 10 - 0.3)
    torch.testing.assert_close(ours(x), ref(x))
    assert LayerNorm(16, bias=False).bias is None


def test_norms_reject_bad_sizes():
    with pytest.raises(ValueError, match="dim >= 1"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="eps > 0"):
        LayerNorm(8, eps=0.0)


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_rope_score_depends_only_on_relative_position(theta):
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, theta)
    q, k = torch.randn(16), torch.randn(16)
    cos, sin = rope(200)

    def score(m: int, n: int) -> torch.Tensor:
        return apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n])

    for m, n, s in [(5, 2, 17), (0, 9, 100), (30, 30, 150), (3, 60, 41)]:
        torch.testing.assert_close(score(m + s, n + s), score(m, n), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(5, 2), score(5, 3), atol=1e-3)  # and it does depend on m - n


def test_rope_rotates_pairs_i_and_i_plus_half_by_position_times_frequency():
    rope = RotaryEmbedding(4, theta=100.0)  # frequencies 1 and 100^(-1/2) = 0.1
    cos, sin = rope(4)
    x = torch.tensor([1.0, 0.0, 0.0, 0.0])  # unit vector in pair 0 = coordinates (0, 2)
    y = apply_rope(x, cos[3], sin[3])  # position 3: pair 0 turns by 3 radians
    torch.testing.assert_close(y, torch.tensor([math.cos(3.0), 0.0, math.sin(3.0), 0.0]))
    x = torch.tensor([0.0, 1.0, 0.0, 0.0])  # pair 1 = coordinates (1, 3) turns by 0.3
    expected = torch.tensor([0.0, math.cos(0.3), 0.0, math.sin(0.3)])
    torch.testing.assert_close(apply_rope(x, cos[3], sin[3]), expected)
    halves_swapped = torch.tensor([-3.0, -4.0, 1.0, 2.0])
    torch.testing.assert_close(rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])), halves_swapped)


def hf_rotary_tables(head_dim: int, theta: float, positions: torch.Tensor):
    """cos, sin (1, T, D) of Hugging Face's own LlamaRotaryEmbedding at the given positions."""
    config = HFLlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim,
                           rope_parameters={"rope_type": "default", "rope_theta": theta})
    rotary = LlamaRotaryEmbedding(config)
    return rotary(torch.zeros(1, dtype=torch.float32), positions[None])


@pytest.mark.parametrize("head_dim, theta", [(8, 10000.0), (16, 500000.0), (64, 10000.0)])
def test_rope_tables_equal_hf_llama_rotary_embedding(head_dim, theta):
    start, T = 37, 50
    cos_hf, sin_hf = hf_rotary_tables(head_dim, theta, torch.arange(start, start + T))
    cos, sin = RotaryEmbedding(head_dim, theta)(T, start)
    assert cos.shape == (T, head_dim) and cos.dtype == torch.float32
    torch.testing.assert_close(cos, cos_hf[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, sin_hf[0], rtol=0, atol=1e-6)


def test_rope_equals_hf_apply_rotary_pos_emb_with_offset():
    torch.manual_seed(0)
    D, theta, start, T = 8, 10000.0, 37, 5
    q, k = torch.randn(2, 3, T, D), torch.randn(2, 3, T, D)
    cos_hf, sin_hf = hf_rotary_tables(D, theta, torch.arange(start, start + T))
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    cos, sin = RotaryEmbedding(D, theta)(T, start)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_hf, rtol=0, atol=1e-6)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_hf, rtol=0, atol=1e-6)


def test_rope_tables_grow_on_demand_with_the_same_values():
    rope = RotaryEmbedding(8)
    cos_short, _ = rope(10)
    cos_short = cos_short.clone()
    cos_long, sin_long = rope(5, start=3000)  # grows the table
    assert rope._cos.size(0) >= 3005
    torch.testing.assert_close(rope(10)[0], cos_short, rtol=0, atol=0)
    full_cos, full_sin = RotaryEmbedding(8)(3005)
    torch.testing.assert_close(cos_long, full_cos[3000:], rtol=0, atol=0)
    torch.testing.assert_close(sin_long, full_sin[3000:], rtol=0, atol=0)
    assert rope.state_dict() == {}  # nothing saved in checkpoints


def test_rope_keeps_float32_tables_when_model_is_cast():
    rope = RotaryEmbedding(8).to(torch.bfloat16)
    cos, _ = rope(4)
    assert cos.dtype == torch.float32
    assert apply_rope(torch.ones(4, 8, dtype=torch.bfloat16), *rope(4)).dtype == torch.bfloat16


def test_rope_rejects_odd_head_dim_and_bad_theta():
    with pytest.raises(ValueError, match="head_dim must be even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="theta must be > 0"):
        rope_inv_freq(8, theta=0.0)
    with pytest.raises(ValueError, match="seq_len >= 1"):
        RotaryEmbedding(8)(0)
