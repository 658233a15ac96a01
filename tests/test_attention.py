import pytest
import torch
import torch.nn.functional as F

from minimodels.layers.attention import CausalSelfAttention, attention, attention_mask


def test_causal_mask_is_lower_triangular():
    assert torch.equal(attention_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert attention_mask(3, causal=False).all()


def test_window_mask_keeps_the_most_recent_positions():
    mask = attention_mask(5, window=2)
    expected = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_queries_align_to_the_end_of_the_keys():
    mask = attention_mask(2, 5)  # the last two of five positions
    assert mask.tolist() == [[True, True, True, True, False], [True] * 5]


def test_mask_errors():
    with pytest.raises(ValueError, match="window"):
        attention_mask(4, window=0)
    with pytest.raises(ValueError, match="causal"):
        attention_mask(4, causal=False, window=2)
    with pytest.raises(ValueError, match="t_q"):
        attention_mask(0)


@pytest.mark.parametrize("window", [None, 1, 3])
def test_written_out_attention_equals_sdpa(window):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 7, 8).unbind(0)  # (B, H, T, D) each
    mask = attention_mask(7, window=window)
    ours, weights = attention(q, k, v, mask, return_weights=True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))
    assert (weights[..., ~mask] == 0).all()


def test_self_attention_shapes_and_causality():
    torch.manual_seed(0)
    layer = CausalSelfAttention(n_embd=16, n_head=4).eval()
    x = torch.randn(2, 6, 16)
    y = layer(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 16)  # change the future
    torch.testing.assert_close(layer(x2)[:, :4], y[:, :4])
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(n_embd=10, n_head=4)
