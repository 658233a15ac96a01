"""LoRA against peft on a tiny Hugging Face Llama converted with from_hf: same logits with the same A and B,
merged and unmerged, rsLoRA, dropout in eval mode; same trainable counts; merge/unmerge, save/load, errors."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from minimodels import from_hf
from minimodels.peft import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_lora,
    lora_modules,
    lora_state_dict,
    merge_and_unload,
    merge_lora,
    save_lora,
    trainable_parameters,
    unmerge_lora,
)

VOCAB = 97
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_hf(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return LlamaForCausalLM(config).eval()


def ids(batch=2, length=12, seed=1):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def our_name(peft_name: str) -> str:
    """peft's 'base_model.model.model.layers.0.self_attn.q_proj' -> the course's 'layers.0.attn.q_proj'."""
    name = peft_name.removeprefix("base_model.model.").removeprefix("model.")
    return name.replace("self_attn.", "attn.")


def peft_pair(targets, r=4, alpha=8.0, dropout=0.0, rslora=False):
    """(peft model, our LoRA model) with the same base weights and the same (random, non-zero) A and B."""
    hf = tiny_hf()
    ours = from_hf(hf)
    peft_targets = targets if isinstance(targets, str) else list(targets)
    pm = get_peft_model(hf, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, use_rslora=rslora,
                                       target_modules=peft_targets, init_lora_weights=False)).eval()
    our_targets = ("re:" + targets,) if isinstance(targets, str) else targets
    apply_lora(ours, LoRAConfig(r=r, alpha=alpha, dropout=dropout, target_modules=our_targets, use_rslora=rslora))
    ours.eval()
    mods = lora_modules(ours)
    copied = 0
    with torch.no_grad():
        for name, m in pm.named_modules():
            if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}):
                mine = mods[our_name(name)]
                mine.lora_A.copy_(m.lora_A["default"].weight)  # (r, in)
                mine.lora_B.copy_(m.lora_B["default"].weight)  # (out, r)
                assert mine.scaling == pytest.approx(m.scaling["default"])
                copied += 1
    assert copied == len(mods) > 0
    return pm, ours


def logits_pair(pm, ours, tokens):
    with torch.no_grad():
        return ours(tokens), pm(input_ids=tokens).logits


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ALL_LINEAR, r".*\.(k_proj|down_proj)"],
                         ids=["qv", "all-linear", "regex"])
def test_logits_equal_peft_before_and_after_merging(targets):
    pm, ours = peft_pair(targets)
    tokens = ids()
    a, b = logits_pair(pm, ours, tokens)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with torch.no_grad():
        base = pm.get_base_model()
        with pm.disable_adapter():
            plain = pm(input_ids=tokens).logits
    assert (a - plain).abs().max() > 1e-3  # the adapter really changes the output
    merge_lora(ours)
    pm.merge_adapter()
    a_merged, b_merged = logits_pair(pm, ours, tokens)
    torch.testing.assert_close(a_merged, b_merged, rtol=0, atol=1e-5)
    torch.testing.assert_close(a_merged, a, rtol=0, atol=1e-5)
    assert base is pm.get_base_model()


def test_rslora_and_dropout_in_eval_mode_equal_peft():
    pm, ours = peft_pair(("q_proj", "v_proj", "up_proj"), r=16, alpha=4.0, dropout=0.3, rslora=True)
    assert next(iter(lora_modules(ours).values())).scaling == pytest.approx(4.0 / 4.0)  # alpha / sqrt(16)
    a, b = logits_pair(pm, ours, ids(seed=3))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("targets,r", [(("q_proj", "v_proj"), 4), (ALL_LINEAR, 8), (("o_proj", "gate_proj"), 1)])
def test_trainable_parameter_counts_equal_peft(targets, r):
    hf = tiny_hf()
    ours = apply_lora(from_hf(hf), LoRAConfig(r=r, target_modules=targets))
    pm = get_peft_model(hf, LoraConfig(r=r, target_modules=list(targets)))
    peft_trainable, peft_total = pm.get_nb_trainable_parameters()
    report = trainable_parameters(ours)
    assert (report.trainable, report.total) == (peft_trainable, peft_total)
    assert report.fraction == pytest.approx(peft_trainable / peft_total)


def test_fresh_lora_equals_base_and_initializes_like_peft():
    hf = tiny_hf()
    base = from_hf(hf)
    ours = apply_lora(copy.deepcopy(base), LoRAConfig(r=8, target_modules=ALL_LINEAR))
    tokens = ids()
    with torch.no_grad():
        assert torch.equal(ours(tokens), base(tokens))  # B = 0: exactly the base model
    pm = get_peft_model(hf, LoraConfig(r=8, target_modules=list(ALL_LINEAR)))  # peft's default init
    peft_A = {our_name(n): m.lora_A["default"].weight for n, m in pm.named_modules()
              if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}
    for name, m in lora_modules(ours).items():
        bound = 1 / m.in_features ** 0.5  # kaiming_uniform(a=sqrt(5)) bound, the same for peft's A
        assert torch.equal(m.lora_B, torch.zeros_like(m.lora_B))
        assert m.lora_A.abs().max() <= bound and m.lora_A.abs().max() > 0.9 * bound
        assert peft_A[name].abs().max() <= bound and peft_A[name].shape == m.lora_A.shape
        # same spread as peft's draw (uniform: std = bound / sqrt(3)) within sampling error
        assert m.lora_A.std().item() == pytest.approx(peft_A[name].std().item(), rel=0.25)


def test_only_lora_trains_and_dropout_touches_the_branch_only():
    model = apply_lora(from_hf(tiny_hf()), LoRAConfig(r=4, dropout=0.5, target_modules=("q_proj",)))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.endswith(("lora_A", "lora_B")) for n in names)
    layer = lora_modules(model)["layers.0.attn.q_proj"]
    x = torch.randn(3, 64)
    layer.train()
    torch.testing.assert_close(layer(x), layer.base(x), rtol=0, atol=0)  # B = 0: dropout cannot leak into base
    with torch.no_grad():
        layer.lora_B.normal_()
    train_out = layer(x)
    layer.eval()
    eval_out = layer(x)
    expected = layer.base(x) + layer.scaling * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(eval_out, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(train_out, eval_out)


def test_merge_then_unmerge_restores_the_weight():
    _, ours = peft_pair(ALL_LINEAR, r=8, alpha=32.0)
    before = {n: m.base.weight.detach().clone() for n, m in lora_modules(ours).items()}
    merge_lora(ours)
    for n, m in lora_modules(ours).items():
        assert m.merged and (m.base.weight - before[n]).abs().max() > 1e-3
        expected = before[n] + (32.0 / 8) * m.lora_B @ m.lora_A
        torch.testing.assert_close(m.base.weight, expected, rtol=0, atol=1e-6)
    unmerge_lora(ours)
    for n, m in lora_modules(ours).items():
        assert not m.merged
        torch.testing.assert_close(m.base.weight, before[n], rtol=0, atol=1e-6)


def test_merge_and_unload_gives_a_plain_model_with_the_same_logits():
    _, ours = peft_pair(("q_proj", "down_proj"))
    tokens = ids()
    with torch.no_grad():
        expected = ours(tokens)
    plain = merge_and_unload(ours)
    assert not lora_modules(plain) and isinstance(plain.layers[0].attn.q_proj, torch.nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), expected, rtol=0, atol=1e-5)


def test_saved_adapter_reloads_onto_a_fresh_base(tmp_path):
    hf = tiny_hf()
    fresh = from_hf(hf)
    _, ours = peft_pair(("q_proj", "v_proj", "gate_proj"), r=4, alpha=8.0, rslora=True)
    path = save_lora(ours, tmp_path / "adapter.safetensors")
    n_adapter = sum(t.numel() for t in lora_state_dict(ours).values())
    assert path.stat().st_size < 4 * n_adapter + 4096  # the adapter alone: float32 tensors and a small header
    assert path.stat().st_size < 4 * sum(p.numel() for p in fresh.parameters()) / 4
    loaded = load_lora(fresh, path).eval()
    assert loaded.lora_config.use_rslora
    tokens = ids(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), ours(tokens), rtol=0, atol=0)


def test_a_saved_adapter_must_fit_the_model(tmp_path):
    _, ours = peft_pair(("q_proj",), r=4)
    path = save_lora(ours, tmp_path / "a.safetensors")
    other = apply_lora(from_hf(tiny_hf()), LoRAConfig(r=4, target_modules=("v_proj",)))
    with pytest.raises(ValueError, match="does not fit the model: missing"):
        load_lora(other, path)
    with pytest.raises(FileNotFoundError, match="no adapter file"):
        load_lora(other, tmp_path / "missing.safetensors")
    merge_lora(ours)
    with pytest.raises(ValueError, match="merged"):
        save_lora(ours, tmp_path / "b.safetensors")


@pytest.mark.parametrize("kwargs,match", [
    (dict(r=0), r"LoRAConfig.r=0: must be an int >= 1"),
    (dict(r=2.5), r"LoRAConfig.r=2.5"),
    (dict(alpha=0), r"LoRAConfig.alpha=0: must be a number > 0"),
    (dict(alpha=-1.0), r"LoRAConfig.alpha=-1.0"),
    (dict(dropout=1.0), r"LoRAConfig.dropout=1.0: must be in \[0, 1\)"),
    (dict(target_modules=()), r"LoRAConfig.target_modules=\(\): must be a non-empty"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRAConfig(**kwargs)


def test_no_matching_target_lists_the_linear_names_and_applying_twice_fails():
    model = from_hf(tiny_hf())
    with pytest.raises(ValueError, match=r"matches no linear layer.*'down_proj'.*'q_proj'"):
        apply_lora(model, LoRAConfig(target_modules=("query",)))
    assert not lora_modules(model) and all(p.requires_grad for p in model.parameters())  # untouched
    apply_lora(model, LoRAConfig())
    with pytest.raises(ValueError, match="already has LoRA layers"):
        apply_lora(model, LoRAConfig())
    with pytest.raises(TypeError, match="config must be a LoRAConfig"):
        apply_lora(from_hf(tiny_hf()), {"r": 4})
    with pytest.raises(ValueError, match="has no LoRA layers"):
        merge_lora(from_hf(tiny_hf()))
    with pytest.raises(TypeError, match="base must be an nn.Linear or QuantLinear"):
        LoRALinear(torch.nn.Embedding(3, 4), 2, 4.0)
