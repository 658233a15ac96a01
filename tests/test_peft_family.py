"""The rest of the PEFT family on a tiny Llama: bottleneck adapters, prompt tuning, BitFit, last layers, full
fine-tuning (each starts equal to the base model, trains only what it says, and learns), and vocabulary
expansion with staged freezing."""

import copy

import pytest
import torch
import torch.nn.functional as F

from minimodels import Llama, LlamaConfig, TrainConfig, train
from minimodels.peft import (
    STAGES,
    Adapted,
    LoRAConfig,
    PromptTuning,
    apply_adapters,
    apply_bitfit,
    apply_lora,
    expand_vocabulary,
    extend_tokenizer,
    full_finetune,
    new_token_pieces,
    set_stage,
    train_last_layers,
    trainable_parameters,
)
from minimodels.text.bpe import BPETokenizer

V, DIM, LAYERS = 61, 32, 3


def tiny_llama(seed=0):
    """Weights of std 0.1 rather than 0.02: sublayer outputs of a size that matters, as in a trained model
    (with tiny random sublayers, methods that act through them, adapters and prompts, can barely learn)."""
    torch.manual_seed(seed)
    model = Llama(LlamaConfig(vocab_size=V, dim=DIM, n_layers=LAYERS, n_heads=4, n_kv_heads=2, mlp_hidden=64))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.1)
    return model.eval()


def tokens(batch=4, length=12, seed=1):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def fit(model, steps=25, lr=1e-2):
    """A few Adam steps on one fixed batch (next token); returns the losses before and after."""
    x = tokens(seed=7)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps + 1):
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses[0], losses[-1]


METHODS = {
    "full": lambda m: full_finetune(m),
    "lora": lambda m: apply_lora(m, LoRAConfig(r=4, target_modules=("q_proj", "v_proj", "down_proj"))),
    "adapters": lambda m: apply_adapters(m, bottleneck=8),
    "prompt": lambda m: PromptTuning(m, n_virtual_tokens=4),
    "bitfit": lambda m: apply_bitfit(m),
    "last_layer": lambda m: train_last_layers(m, 1),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_starts_at_the_base_model_and_learns(method):
    base = tiny_llama()
    model = METHODS[method](copy.deepcopy(base))
    x = tokens()
    if method != "prompt":  # the others add nothing at first (zero B, zero up, zero biases) or change nothing
        with torch.no_grad():
            torch.testing.assert_close(model(x), base(x), rtol=0, atol=1e-6)
    start, end = fit(model)
    assert end < start - 0.3, (start, end)


def test_trainable_parameter_counts():
    per_adapter = 2 * DIM * 8 + 8 + DIM  # down (dim -> 8, bias) and up (8 -> dim, bias)
    assert trainable_parameters(apply_adapters(tiny_llama(), bottleneck=8)).trainable == 2 * LAYERS * per_adapter
    assert trainable_parameters(PromptTuning(tiny_llama(), n_virtual_tokens=5)).trainable == 5 * DIM
    model = tiny_llama()
    outputs = sum(m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert trainable_parameters(apply_bitfit(model)).trainable == outputs
    full = tiny_llama()
    assert trainable_parameters(full_finetune(full)).trainable == sum(p.numel() for p in full.parameters())
    last = train_last_layers(tiny_llama(), 1)
    assert all(n.startswith((f"layers.{LAYERS - 1}.", "norm.")) for n in trainable_names(last))
    assert trainable_parameters(last).trainable == sum(p.numel() for p in last.layers[-1].parameters()) + DIM


def test_adapter_is_a_residual_bottleneck_after_each_sublayer():
    model = apply_adapters(tiny_llama(), bottleneck=8)
    assert all(isinstance(layer.attn, Adapted) and isinstance(layer.mlp, Adapted) for layer in model.layers)
    assert all(".adapter." in n for n in trainable_names(model))
    adapter = model.layers[0].mlp.adapter
    with torch.no_grad():
        adapter.up.weight.normal_()
    h = torch.randn(2, 3, DIM)
    expected = h + (F.gelu(h @ adapter.down.weight.T + adapter.down.bias) @ adapter.up.weight.T + adapter.up.bias)
    torch.testing.assert_close(adapter(h), expected, rtol=1e-5, atol=1e-6)


def test_prompt_tuning_is_the_base_model_reading_the_prompt_first():
    base = tiny_llama()
    tuned = PromptTuning(copy.deepcopy(base), n_virtual_tokens=3, seed=4)
    rows = torch.randint(0, V, (3,), generator=torch.Generator().manual_seed(4))  # the tokens it starts from
    torch.testing.assert_close(tuned.prompt, base.embed.weight[rows], rtol=0, atol=0)
    x = tokens()
    with torch.no_grad():
        with_prompt = base(torch.cat([rows.expand(x.size(0), 3), x], dim=1))[:, 3:]
        torch.testing.assert_close(tuned(x), with_prompt, rtol=0, atol=1e-5)
    assert trainable_names(tuned) == ["prompt"]


def test_bitfit_adds_zero_biases_and_trains_only_them():
    model = apply_bitfit(tiny_llama())
    names = trainable_names(model)
    assert names and all(n.endswith(".bias") for n in names)
    assert model.layers[0].attn.q_proj.bias.abs().sum() == 0


def test_bad_input():
    with pytest.raises(ValueError, match="bottleneck must be an int >= 1"):
        apply_adapters(tiny_llama(), bottleneck=0)
    model = apply_adapters(tiny_llama())
    with pytest.raises(ValueError, match="already has adapters"):
        apply_adapters(model)
    with pytest.raises(ValueError, match="match no submodule"):
        apply_adapters(tiny_llama(), targets=("ffn",))
    with pytest.raises(ValueError, match="n_virtual_tokens must be an int >= 1"):
        PromptTuning(tiny_llama(), n_virtual_tokens=0)
    with pytest.raises(TypeError, match="PromptTuning needs a course Llama"):
        PromptTuning(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"n_layers must be an int in \[1, 3\]"):
        train_last_layers(tiny_llama(), 4)
    with pytest.raises(TypeError, match="no `layers` ModuleList"):
        train_last_layers(torch.nn.Linear(3, 3), 1)


# ---------------------------------------------------------------- vocabulary expansion with staged freezing

ENGLISH = ("The function returns the value of the attribute. A list is a sequence of items; the items can be "
           "any object. When the loop ends, the value is printed and the program returns to the caller. ") * 6
CODE = ("def area(self, width, height):\n    return self.scale * width * height\n\n"
        "class Shape:\n    def __init__(self, scale):\n        self.scale = scale\n") * 6


@pytest.fixture(scope="module")
def tokenizers():
    old = BPETokenizer.train(ENGLISH, vocab_size=300, special_tokens=["<|endoftext|>"])
    return old, extend_tokenizer(old, [CODE], n_new_tokens=24)


def test_extend_tokenizer_keeps_old_ids_and_shortens_the_new_domain(tokenizers):
    old, new = tokenizers
    assert new.vocab_size == old.vocab_size + 24
    assert all(new.vocab[i] == b for i, b in old.vocab.items())  # old ids keep their bytes
    assert new.merges[: len(old.merges)] == old.merges  # old merges first, new ones after
    assert new.special_ids == old.special_ids
    assert new.decode(new.encode(CODE)) == CODE
    assert len(new.encode(CODE)) < 0.8 * len(old.encode(CODE))
    text = "self.scale<|endoftext|>def"
    assert new.special_ids["<|endoftext|>"] in new.encode(text)


def test_new_token_pieces_spell_the_new_tokens(tokenizers):
    old, new = tokenizers
    pieces = new_token_pieces(old, new)
    assert sorted(pieces) == list(range(old.vocab_size, new.vocab_size))
    for i, parts in pieces.items():
        assert all(p < old.vocab_size for p in parts) and len(parts) >= 2
        assert b"".join(old.vocab[p] for p in parts) == new.vocab[i]


def expanded_pair(tokenizers, tie=True, output_init="mean"):
    old, new = tokenizers
    torch.manual_seed(0)
    base = Llama(LlamaConfig(vocab_size=old.vocab_size, dim=DIM, n_layers=2, n_heads=4, tie_embeddings=tie)).eval()
    return base, expand_vocabulary(copy.deepcopy(base), old, new, output_init=output_init)


@pytest.mark.parametrize("tie,output_init", [(True, "mean"), (False, "mean"), (False, "first")])
def test_expand_vocabulary_initializes_new_rows_from_their_pieces(tokenizers, tie, output_init):
    old, new = tokenizers
    base, model = expanded_pair(tokenizers, tie, output_init)
    pieces = new_token_pieces(old, new)
    assert model.embed.weight.shape == (new.vocab_size, DIM) and model.config.vocab_size == new.vocab_size
    assert (model.lm_head.weight is model.embed.weight) == tie
    for i, parts in pieces.items():
        torch.testing.assert_close(model.embed.weight[i], base.embed.weight[parts].mean(0), rtol=0, atol=1e-7)
        expected_out = base.lm_head.weight[parts[0]] if output_init == "first" else base.lm_head.weight[parts].mean(0)
        torch.testing.assert_close(model.lm_head.weight[i], expected_out, rtol=0, atol=1e-7)
    x = torch.randint(0, old.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the old tokens' logits are unchanged; new columns are appended
        torch.testing.assert_close(model(x)[..., : old.vocab_size], base(x), rtol=0, atol=0)


def test_staged_freezing_trains_only_what_the_stage_names(tokenizers):
    old, new = tokenizers
    base, model = expanded_pair(tokenizers, tie=False)
    ids = torch.tensor(new.encode(CODE))
    get_batch = lambda split: (ids[None, :-1], ids[None, 1:])
    cfg = TrainConfig(max_iters=3, lr=1e-2, warmup_iters=0, weight_decay=0.0, eval_interval=3, eval_iters=1,
                      progress=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    handle = set_stage(model, "new_rows", n_old=old.vocab_size)
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == ["embed.weight", "lm_head.weight"]
    train(model, get_batch, cfg)
    handle.remove()
    for name, p in model.named_parameters():
        if name in ("embed.weight", "lm_head.weight"):
            assert torch.equal(p[: old.vocab_size], before[name][: old.vocab_size])  # old rows untouched
            assert not torch.equal(p[old.vocab_size:], before[name][old.vocab_size:])  # new rows trained
        else:
            assert torch.equal(p, before[name])
    set_stage(model, "embeddings", n_old=old.vocab_size)
    train(model, get_batch, cfg)
    assert not torch.equal(model.embed.weight[: old.vocab_size], before["embed.weight"][: old.vocab_size])
    assert torch.equal(model.layers[0].attn.q_proj.weight, before["layers.0.attn.q_proj.weight"])
    set_stage(model, "all", n_old=old.vocab_size)
    assert all(p.requires_grad for p in model.parameters())
    assert set(STAGES) == {"new_input", "new_output", "new_rows", "embeddings", "all"}


def test_vocabulary_bad_input(tokenizers):
    old, new = tokenizers
    base, model = expanded_pair(tokenizers, tie=True)
    with pytest.raises(ValueError, match="stage must be one of"):
        set_stage(model, "layers", n_old=old.vocab_size)
    with pytest.raises(ValueError, match="n_old must be an int in"):
        set_stage(model, "new_rows", n_old=0)
    with pytest.raises(ValueError, match="needs an untied lm_head"):
        set_stage(model, "new_input", n_old=old.vocab_size)
    with pytest.raises(ValueError, match="output_init='first' needs an untied lm_head"):
        expand_vocabulary(copy.deepcopy(base), old, new, output_init="first")
    with pytest.raises(ValueError, match="model.embed has"):
        expand_vocabulary(model, old, new)  # already expanded
    with pytest.raises(ValueError, match="n_new_tokens must be an int >= 1"):
        extend_tokenizer(old, [CODE], 0)
    with pytest.raises(ValueError, match="texts is empty"):
        extend_tokenizer(old, [""], 5)
    with pytest.raises(TypeError, match="tokenizer must be a BPETokenizer"):
        extend_tokenizer("gpt2", [CODE], 5)
    with pytest.raises(ValueError, match="must keep every id"):
        new_token_pieces(new, BPETokenizer.train(CODE, vocab_size=280))
