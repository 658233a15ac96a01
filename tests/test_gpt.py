import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from minimodels import GPT, GPTConfig, from_hf, load_checkpoint, save_checkpoint
from minimodels.hf.gpt import load_gpt2_checkpoint


def tiny_config(**kw):
    defaults = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
    return GPTConfig(**{**defaults, **kw})


def test_logits_shape():
    model = GPT(tiny_config())
    assert model(torch.zeros(3, 10, dtype=torch.long)).shape == (3, 10, 37)


def test_changing_a_later_token_leaves_earlier_logits_unchanged():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    x = torch.randint(0, 37, (2, 12))
    y = x.clone()
    y[:, 7] = (y[:, 7] + 1) % 37
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_sequence_longer_than_block_size_is_refused():
    model = GPT(tiny_config(block_size=8))
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("field,value,message", [
    ("n_head", 5, "divisible by n_head"),
    ("n_embd", 0, "n_embd must be a positive int"),
    ("n_layer", -1, "n_layer must be a positive int"),
    ("vocab_size", 0, "vocab_size"),
    ("dropout", 1.0, "dropout"),
    ("activation", "swish", "activation"),
])
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def hf_gpt2(seed=0, **kw):
    torch.manual_seed(seed)
    defaults = dict(vocab_size=101, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                    bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(GPT2Config(**{**defaults, **kw})).eval()


@pytest.mark.parametrize("kw", [
    {},
    {"vocab_size": 67, "n_layer": 3, "n_head": 2},  # odd vocabulary size
    {"tie_word_embeddings": False},
    {"n_inner": 48, "activation_function": "gelu", "layer_norm_epsilon": 1e-6},
    {"n_embd": 48, "n_head": 6, "activation_function": "relu"},
])
def test_from_hf_gpt2_logits_match(kw):
    hf = hf_gpt2(**kw)
    # untie / randomize heads and layer norms so that every tensor matters
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln" in name or "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours = from_hf(hf)
    x = torch.randint(0, hf.config.vocab_size, (3, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)
    if not kw.get("tie_word_embeddings", True):
        assert ours.lm_head.weight.data_ptr() != ours.wte.weight.data_ptr()


def test_from_hf_rejects_unsupported_models():
    with pytest.raises(TypeError, match="supported Hugging Face classes: .*GPT2LMHeadModel"):
        from_hf(torch.nn.Linear(2, 2))


def test_local_gpt2_checkpoint_folder(tmp_path):
    hf = hf_gpt2(seed=3, vocab_size=53)
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors, the published layout
    assert (tmp_path / "model.safetensors").exists()
    ours = load_gpt2_checkpoint(tmp_path)
    x = torch.randint(0, 53, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_gpt2_checkpoint(tmp_path / "missing")


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = GPT(tiny_config(tie_embeddings=True)).eval()
    save_checkpoint(model, tmp_path / "ckpt", extra={"step": 5})
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["config"]["n_embd"] == 32 and meta["extra"] == {"step": 5}
    again = load_checkpoint(tmp_path / "ckpt")
    x = torch.randint(0, 37, (2, 16))
    assert torch.equal(model(x), again(x))
    assert again.lm_head.weight.data_ptr() == again.wte.weight.data_ptr()  # tying survives
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "nothing")
