import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from minimodels import GPT, GPTConfig, from_hf, load_checkpoint, save_checkpoint
from minimodels.hf.gpt import load_gpt2_checkpoint
from minimodels.runtime import num_parameters
from minimodels.training.checkpoint import read_meta


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
    ("mlp_hidden", 1.5, r"GPTConfig.mlp_hidden must be None \(4 \* n_embd\) or a positive int, got 1.5"),
    ("mlp_hidden", 0, r"GPTConfig.mlp_hidden must be None .* got 0"),
    ("layer_norm_eps", 0.0, r"GPTConfig.layer_norm_eps must be a finite number > 0, got 0.0"),
    ("layer_norm_eps", -1e-5, r"GPTConfig.layer_norm_eps must be a finite number > 0, got -1e-05"),
    ("layer_norm_eps", "1e-5", r"GPTConfig.layer_norm_eps must be a finite number > 0, got '1e-5'"),
    ("block_size", 16.0, r"GPTConfig.block_size must be a positive int, got 16.0"),
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


def test_out_of_vocabulary_ids_are_named():
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match=r"input_ids must be token ids in \[0, vocab_size=37\), got ids from 0 to 37"):
        model(torch.tensor([[0, 5, 37]]))
    with pytest.raises(TypeError, match="input_ids must hold integer token ids, got dtype torch.float32"):
        model(torch.zeros(1, 3))


def test_num_parameters_counts_a_tied_weight_once():
    config = tiny_config()
    tied, untied = GPT(config), GPT(tiny_config(tie_embeddings=False))
    V, C, P = config.vocab_size, config.n_embd, config.block_size
    assert num_parameters(untied) - num_parameters(tied) == V * C  # the separate head
    assert tied.num_parameters() == num_parameters(tied)
    assert tied.num_parameters(exclude_embeddings=True) == num_parameters(tied) - P * C  # position table only


def test_checkpoint_extra_reads_back_with_read_meta(tmp_path):
    model = GPT(tiny_config())
    extra = {"step": 12, "val_loss": 1.25, "notes": ["char-level", "tiny"], "tokenizer": {"kind": "char"}}
    save_checkpoint(model, tmp_path / "ckpt", extra=extra)
    meta = read_meta(tmp_path / "ckpt")
    assert meta["model"] == "gpt" and meta["extra"] == extra
    assert meta["config"]["n_layer"] == 2
    save_checkpoint(model, tmp_path / "plain")
    assert read_meta(tmp_path / "plain")["extra"] == {}
    with pytest.raises(TypeError, match="extra must be a dict"):
        save_checkpoint(model, tmp_path / "bad", extra=[1, 2])


def test_from_hf_names_a_missing_tensor(tmp_path):
    hf = hf_gpt2()
    hf.transformer.ln_f = torch.nn.Identity()  # the checkpoint now lacks ln_f.weight and ln_f.bias
    with pytest.raises(ValueError, match=r"from_hf: the GPT-2 checkpoint has no tensor 'ln_f.weight' "
                                         r"\(after dropping the prefix 'transformer.'\)"):
        from_hf(hf)
    from safetensors.torch import save_file

    complete = hf_gpt2()
    complete.save_pretrained(tmp_path)  # then drop one tensor from the file, as an incomplete download would
    state = {k: v.contiguous() for k, v in complete.state_dict().items() if k != "transformer.h.1.attn.c_proj.bias"}
    state.pop("lm_head.weight", None)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="has no tensor 'h.1.attn.c_proj.bias'"):
        load_gpt2_checkpoint(tmp_path)
