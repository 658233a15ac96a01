"""NF4 and int8 against bitsandbytes on CPU (same bytes, absmax and dequantized values), error bounds,
memory in bytes, QuantLinear, QLoRA (LoRA on a frozen 4-bit base), and bad input."""

import pytest
import torch
from bitsandbytes import functional as bnb

from minimodels import Llama, LlamaConfig
from minimodels.peft import (
    LoRAConfig,
    QuantizedTensor,
    QuantLinear,
    apply_lora,
    dequantize,
    lora_modules,
    merge_lora,
    nf4_code,
    quantize_int8,
    quantize_model,
    quantize_nf4,
    trainable_parameters,
)


def bnb_dequantize(packed, state):
    """bitsandbytes' dequantize_4bit; for an odd last dimension it falls back to a torch.compile'd function
    (seconds to compile), which runs the same code eagerly with dynamo off."""
    with torch._dynamo.config.patch(disable=True):
        return bnb.dequantize_4bit(packed, state)


def weights(shape, seed=0, dist="normal"):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.02
    if dist == "heavy":  # a few large outliers, as trained weights have
        w = w * (1 + 20 * (torch.rand(shape, generator=g) > 0.995))
    return w


def test_nf4_table_is_bitsandbytes_table():
    ours, ref = nf4_code(), bnb.get_4bit_type("nf4", device="cpu")
    assert torch.equal(ours, ref)
    assert ours[7] == 0 and ours[0] == -1 and ours[-1] == 1 and (ours.diff() > 0).all()


@pytest.mark.parametrize("shape,dist,dtype", [
    ((64, 128), "normal", torch.float32),
    ((48, 70), "heavy", torch.float32),      # 3360 values: the last block has 32
    ((7, 9), "normal", torch.float32),       # odd count: the last byte is padded
    ((96, 64), "heavy", torch.float16),
    ((32, 64), "normal", torch.bfloat16),
])
def test_nf4_equals_bitsandbytes(shape, dist, dtype):
    w = weights(shape, dist=dist).to(dtype)
    ref_packed, state = bnb.quantize_4bit(w, blocksize=64, quant_type="nf4")
    q = quantize_nf4(w, block_size=64)
    assert torch.equal(q.data, ref_packed.reshape(-1))  # same bytes, same nibble order
    assert torch.equal(q.absmax, state.absmax)
    ref = bnb_dequantize(ref_packed, state)
    ours = dequantize(q)
    assert ours.dtype == dtype and ours.shape == w.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_nf4_block_size_and_a_zero_block_equal_bitsandbytes():
    w = weights((16, 256), seed=3)
    w[2] = 0  # whole blocks of zeros
    for block in (64, 128, 256):
        ref_packed, state = bnb.quantize_4bit(w, blocksize=block, quant_type="nf4")
        q = quantize_nf4(w, block_size=block)
        assert torch.equal(q.data, ref_packed.reshape(-1)) and torch.equal(q.absmax, state.absmax)
        torch.testing.assert_close(dequantize(q), bnb_dequantize(ref_packed, state), rtol=0, atol=0)
    assert (dequantize(quantize_nf4(w))[2] == 0).all()


def test_nf4_error_is_at_most_half_the_widest_code_gap_per_block():
    w = weights((64, 256), seed=4, dist="heavy")
    q = quantize_nf4(w)
    err = (dequantize(q) - w).abs().view(-1, 64)  # (blocks, 64)
    half_gap = nf4_code().diff().max() / 2
    assert (err <= q.absmax[:, None] * half_gap * (1 + 1e-6)).all()
    nearest = (w.view(-1, 64, 1) / q.absmax[:, None, None] - nf4_code()).abs().argmin(-1)  # brute force
    assert torch.equal(dequantize(q).view(-1, 64), nf4_code()[nearest] * q.absmax[:, None])


def test_int8_equals_bitsandbytes_rowwise_and_error_is_half_a_step():
    w = weights((32, 100), seed=5, dist="heavy")
    q = quantize_int8(w)
    ref_codes, row_absmax, _ = bnb.int8_vectorwise_quant(w.clone())
    assert torch.equal(q.data, ref_codes)
    torch.testing.assert_close(q.scale * 127, row_absmax, rtol=1e-6, atol=0)
    torch.testing.assert_close(dequantize(q), bnb.int8_vectorwise_dequant(ref_codes, row_absmax), rtol=1e-6, atol=1e-9)
    err = (dequantize(q) - w).abs()
    assert (err <= q.scale[:, None] / 2 * (1 + 1e-5)).all()
    assert err.max() > 0.4 * q.scale.min()  # the bound is tight, not vacuous
    assert (q.data.abs().amax(dim=1) == 127).all()


def test_double_quantization_shrinks_the_scales_and_keeps_the_error():
    w = weights((256, 256), seed=6)
    single, double = quantize_nf4(w), quantize_nf4(w, double_quant=True)
    assert single.bits_per_weight == pytest.approx(4.5)
    n, blocks = 256 * 256, 256 * 256 // 64
    assert double.absmax.dtype == torch.int8 and double.absmax_scale.numel() == blocks // 256
    # 4-bit codes, one int8 absmax per block, one float32 scale per 256 absmaxes, one float32 offset
    assert double.nbytes == n // 2 + blocks + 4 * (blocks // 256) + 4
    assert double.bits_per_weight == pytest.approx(4.127, abs=1e-3)
    err_single = (dequantize(single) - w).pow(2).mean()
    err_double = (dequantize(double) - w).pow(2).mean()
    assert err_double < 1.01 * err_single
    recovered = double.absmax.float() * double.absmax_scale.repeat_interleave(256) + double.absmax_offset
    assert ((recovered - single.absmax).abs() <= double.absmax_scale.repeat_interleave(256) / 2 + 1e-9).all()


def test_quant_linear_memory_in_bytes():
    linear = torch.nn.Linear(256, 512, bias=False)
    layer = QuantLinear.from_linear(linear)
    stored = sum(b.untyped_storage().nbytes() for b in layer.buffers())  # what the buffers really hold
    assert layer.nbytes == stored == 256 * 512 // 2 + 4 * (256 * 512 // 64)
    assert 8 * stored / (256 * 512) == pytest.approx(4.5)
    assert linear.weight.untyped_storage().nbytes() / stored == pytest.approx(32 / 4.5)
    int8 = QuantLinear.from_linear(linear, method="int8")
    assert int8.nbytes == 256 * 512 + 4 * 512


def test_quant_linear_forward_dequantizes():
    linear = torch.nn.Linear(128, 64)
    layer = QuantLinear.from_linear(linear)
    x = torch.randn(4, 5, 128)
    expected = torch.nn.functional.linear(x, dequantize(quantize_nf4(linear.weight)), linear.bias)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)
    rel = (layer(x) - linear(x)).norm() / linear(x).norm()
    assert 0 < rel < 0.15
    assert not any(p.requires_grad for p in layer.parameters())
    torch.testing.assert_close(layer.to_linear().weight, dequantize(quantize_nf4(linear.weight)), rtol=0, atol=0)


def tiny_llama():
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=61, dim=64, n_layers=2, n_heads=4, n_kv_heads=2)).eval()


def test_qlora_trains_only_lora_on_a_frozen_4bit_base():
    model = quantize_model(tiny_llama())
    assert isinstance(model.layers[0].attn.q_proj, QuantLinear) and isinstance(model.lm_head, torch.nn.Linear)
    tokens = torch.randint(0, 61, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(tokens)
    apply_lora(model, LoRAConfig(r=4, target_modules=("q_proj", "v_proj", "down_proj")))
    with torch.no_grad():
        assert torch.equal(model(tokens), before)
    report = trainable_parameters(model)
    lora = sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_modules(model).values())
    assert report.trainable == lora
    loss = model(tokens).logsumexp(-1).mean()
    loss.backward()
    assert all(m.lora_A.grad is not None and m.lora_B.grad is not None for m in lora_modules(model).values())
    assert all(p.grad is None for n, p in model.named_parameters() if "lora" not in n)


def test_merging_a_4bit_base_needs_dequantizing():
    model = apply_lora(quantize_model(tiny_llama()), LoRAConfig(r=4, target_modules=("q_proj",)))
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.normal_(std=0.1)
    tokens = torch.randint(0, 61, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(tokens)
    with pytest.raises(ValueError, match="cannot merge LoRA into a quantized .* dequantize=True"):
        merge_lora(model)
    merge_lora(model, dequantize=True)
    assert all(isinstance(m.base, torch.nn.Linear) and m.merged for m in lora_modules(model).values())
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), before, rtol=0, atol=1e-5)


def test_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        quantize_nf4(torch.ones(4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="block_size must be an even int"):
        quantize_nf4(torch.ones(4, 4), block_size=63)
    with pytest.raises(ValueError, match="quantize_int8 needs a 2-D weight"):
        quantize_int8(torch.ones(8))
    with pytest.raises(ValueError, match="must not be empty"):
        quantize_nf4(torch.ones(0, 4))
    with pytest.raises(TypeError, match="q must be a QuantizedTensor"):
        dequantize(torch.ones(3))
    with pytest.raises(ValueError, match="method must be one of"):
        quantize_model(tiny_llama(), method="fp3")
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        QuantLinear.from_linear(torch.nn.Embedding(3, 4))
    assert isinstance(quantize_nf4(torch.ones(2, 2)), QuantizedTensor)
