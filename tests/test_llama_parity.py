"""from_hf on tiny random Llama / Mistral / Mixtral models: same logits, same aux loss, same greedy tokens."""

import pytest
import torch
from transformers import (
    GPTNeoConfig,
    GPTNeoForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
)

from minimodels import from_hf
from minimodels.generation.cached import generate_cached
from minimodels.hf.llama import llama_from_hf
from minimodels.models.llama import Llama

VOCAB = 97


def tiny(config_cls, seed=0, **overrides):
    """A tiny random HF config (no special tokens, so generate never stops early)."""
    torch.manual_seed(seed)
    values = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
                  bos_token_id=None, eos_token_id=None, pad_token_id=None)
    values.update(overrides)
    return config_cls(**values)


def ids(batch=2, length=16, seed=1):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_same_logits(hf_model, ours, tokens):
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf_model(tokens).logits, rtol=0, atol=1e-4)


@pytest.mark.parametrize("n_kv_heads", [8, 4, 2, 1], ids=["mha", "gqa2", "gqa4", "mqa"])
def test_llama_logits_match_hf_for_each_gqa_ratio(n_kv_heads):
    hf = LlamaForCausalLM(tiny(LlamaConfig, num_key_value_heads=n_kv_heads)).eval()
    ours = from_hf(hf)
    assert isinstance(ours, Llama) and ours.config.n_kv_heads == n_kv_heads
    assert_same_logits(hf, ours, ids())


def test_llama_tied_embeddings_and_rope_theta_match_hf():
    rope = {"rope_type": "default", "rope_theta": 5e5}
    config = tiny(LlamaConfig, tie_word_embeddings=True, rope_parameters=rope, rms_norm_eps=1e-6,
                  head_dim=16, num_attention_heads=4)  # head_dim != hidden / heads
    hf = LlamaForCausalLM(config).eval()
    ours = from_hf(hf)
    assert ours.config.tie_embeddings and ours.config.rope_theta == 5e5 and ours.config.head_dim == 16
    assert ours.lm_head.weight is ours.embed.weight
    assert_same_logits(hf, ours, ids(length=40))


def test_mistral_sliding_window_shorter_than_sequence_matches_hf():
    hf = MistralForCausalLM(tiny(MistralConfig, sliding_window=5)).eval()
    ours = from_hf(hf)
    assert ours.config.sliding_window == 5
    tokens = ids(length=24)
    assert_same_logits(hf, ours, tokens)
    with torch.no_grad():  # the window matters here: without it the logits differ
        ours.config.sliding_window = None
        for layer in ours.layers:
            layer.attn.window = None
        assert (ours(tokens) - hf(tokens).logits).abs().max() > 1e-3


def test_mixtral_top2_of_4_matches_hf_logits_and_aux_loss():
    hf = MixtralForCausalLM(tiny(MixtralConfig, num_local_experts=4, num_experts_per_tok=2,
                                 router_aux_loss_coef=0.02)).eval()
    ours = from_hf(hf)
    assert (ours.config.n_experts, ours.config.top_k, ours.config.router_aux_loss_coef) == (4, 2, 0.02)
    tokens = ids(length=20)
    with torch.no_grad():
        out = hf(tokens, output_router_logits=True)
        torch.testing.assert_close(ours(tokens), out.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours.aux_loss, out.aux_loss, rtol=1e-5, atol=1e-6)


def _hf_greedy(hf, prompt, n):
    # an explicit all-ones attention mask: HF would otherwise mask prompt tokens equal to pad_token_id
    return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                       do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=VOCAB - 1)


def test_greedy_cached_generation_equals_hf_generate_llama():
    hf = LlamaForCausalLM(tiny(LlamaConfig, seed=3, initializer_range=0.2)).eval()
    prompt = ids(length=7, seed=4)
    expected = _hf_greedy(hf, prompt, 32)
    got = generate_cached(from_hf(hf), prompt, 32, greedy=True, cache="static")
    assert got.shape == (2, 39)
    assert torch.equal(got, expected)


def test_greedy_rolling_cache_generation_equals_hf_generate_mistral_beyond_window():
    hf = MistralForCausalLM(tiny(MistralConfig, seed=5, sliding_window=6, initializer_range=0.2)).eval()
    prompt = ids(length=10, seed=6)  # prompt 10 + 32 new >> window 6
    expected = _hf_greedy(hf, prompt, 32)
    ours = from_hf(hf)
    assert torch.equal(generate_cached(ours, prompt, 32, greedy=True, cache="rolling"), expected)
    chunked = generate_cached(ours, prompt, 32, greedy=True, cache="rolling", prefill_chunk=4)
    assert torch.equal(chunked, expected)
    assert torch.equal(generate_cached(ours, prompt, 32, greedy=True, cache="static"), expected)


def test_greedy_cached_generation_equals_hf_generate_mixtral():
    config = tiny(MixtralConfig, seed=7, num_local_experts=4, num_experts_per_tok=2, initializer_range=0.2)
    hf = MixtralForCausalLM(config).eval()
    prompt = ids(length=6, seed=8)
    expected = _hf_greedy(hf, prompt, 30)
    assert torch.equal(generate_cached(from_hf(hf), prompt, 30, greedy=True), expected)


def test_from_hf_rejects_unsupported_models_naming_the_supported_ones():
    gpt_neo = GPTNeoForCausalLM(GPTNeoConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                                           attention_types=[[["global"], 1]], max_position_embeddings=32))
    with pytest.raises(TypeError, match="GPTNeoForCausalLM.*BertModel.*LlamaForCausalLM.*MistralForCausalLM"):
        from_hf(gpt_neo)
    with pytest.raises(TypeError, match="Linear.*LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM"):
        llama_from_hf(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("overrides, message", [
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}, "RoPE type 'linear'"),
    ({"attention_bias": True}, "attention_bias=True is not supported"),
    ({"mlp_bias": True}, "mlp_bias=True is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
])
def test_from_hf_rejects_unsupported_options(overrides, message):
    hf = LlamaForCausalLM(tiny(LlamaConfig, num_hidden_layers=1, **overrides))
    with pytest.raises(ValueError, match=message):
        from_hf(hf)
