"""minimodels.models.mamba: Hugging Face MambaForCausalLM parity (logits, greedy generation), recurrent decoding
equal to the parallel forward, Mamba's initialization, the three scan backends, config validation, training.

The Triton backend runs through the interpreter on CPU (conftest sets TRITON_INTERPRET=1): tiny shapes only.
"""

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from minimodels import TrainConfig, from_hf, generate, train
from minimodels.generation.recurrent import generate_recurrent
from minimodels.hf.mamba import mamba_config_from_hf, mamba_state_from_hf
from minimodels.models.mamba import MambaConfig, MambaLM
from minimodels.training.checkpoint import load_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tiny random HF configs: odd vocabularies, tied and untied heads, with and without biases
HF_CONFIGS = {
    "tied": dict(vocab_size=67, hidden_size=32, state_size=8, num_hidden_layers=2),
    "untied_bias": dict(vocab_size=51, hidden_size=48, state_size=4, num_hidden_layers=2, tie_word_embeddings=False,
                        use_bias=True, conv_kernel=3, time_step_rank=5),
    "wide_state": dict(vocab_size=37, hidden_size=64, state_size=16, num_hidden_layers=2, use_conv_bias=False),
}
SEQ = 70  # crosses the chunked scan's chunk boundaries (chunk_size 32)


def hf_mamba(name: str, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.MambaConfig(**HF_CONFIGS[name], pad_token_id=0, eos_token_id=0, bos_token_id=0)
    return transformers.MambaForCausalLM(config).eval()


def random_ids(vocab: int, batch: int = 2, length: int = SEQ, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def tiny_config(**overrides) -> MambaConfig:
    return MambaConfig(**{**dict(vocab_size=29, d_model=16, n_layers=2, d_state=4), **overrides})


@pytest.mark.parametrize("name", sorted(HF_CONFIGS))
def test_logits_match_hugging_face(name):
    hf = hf_mamba(name)
    ours = from_hf(hf)
    assert isinstance(ours, MambaLM)
    assert ours.config.tie_embeddings == HF_CONFIGS[name].get("tie_word_embeddings", True)
    ids = random_ids(hf.config.vocab_size)
    with torch.no_grad():
        expected, got = hf(ids).logits, ours(ids)
    assert got.shape == (2, SEQ, hf.config.vocab_size)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_greedy_generation_matches_hugging_face_generate():
    hf = hf_mamba("tied")
    ours = from_hf(hf)
    prompt = random_ids(hf.config.vocab_size, length=7, seed=3)
    new = 24
    expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=new,
                           min_new_tokens=new, pad_token_id=0, eos_token_id=0)
    got = generate_recurrent(ours, prompt, new, greedy=True)
    assert got.shape == (2, 7 + new)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["tied", "untied_bias"])
def test_step_decoding_equals_full_forward(name):
    model = from_hf(hf_mamba(name))
    ids = random_ids(model.config.vocab_size, length=20)
    full = model(ids)
    state = model.init_state(2)
    stepped = torch.stack([model.step(ids[:, t], state) for t in range(ids.shape[1])], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)
    # a parallel prefill of part of the sequence, then steps, gives the same logits
    prefix, state = model.prefill(ids[:, :9])
    rest = torch.stack([model.step(ids[:, t], state) for t in range(9, ids.shape[1])], dim=1)
    torch.testing.assert_close(torch.cat([prefix, rest], dim=1), full, atol=1e-5, rtol=0)


def test_recurrent_state_has_constant_size():
    model = MambaLM(tiny_config()).eval()
    _, short = model.prefill(random_ids(29, length=3))  # shorter than d_conv: zero-padded conv state
    _, long = model.prefill(random_ids(29, length=40))
    assert short.nbytes() == long.nbytes() == model.init_state(2).nbytes()
    c = model.config
    assert short.nbytes() == 4 * 2 * c.n_layers * c.d_inner * (c.d_conv + c.d_state)


def test_generate_recurrent_equals_generate_with_sampling():
    torch.manual_seed(0)
    model = MambaLM(tiny_config()).eval()
    prompt = random_ids(29, length=5)
    kwargs = dict(temperature=0.9, top_k=10, top_p=0.95, seed=7)
    assert torch.equal(generate_recurrent(model, prompt, 12, **kwargs), generate(model, prompt, 12, **kwargs))
    assert torch.equal(generate_recurrent(model, prompt, 0), prompt)


def test_initialization():
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=30, d_model=40, n_layers=2, d_state=6, dt_min=0.002, dt_max=0.05)
    model = MambaLM(config)
    assert config.dt_rank == math.ceil(40 / 16) and config.d_inner == 80
    assert model.lm_head.weight is model.embedding.weight
    for layer in model.layers:
        mixer = layer.mixer
        assert torch.equal(mixer.A(), -torch.arange(1, 7, dtype=torch.float32).repeat(80, 1))
        assert torch.equal(mixer.D.detach(), torch.ones(80))
        dt = F.softplus(mixer.dt_proj.bias.detach())
        assert dt.min() >= 0.002 * (1 - 1e-4) and dt.max() <= 0.05 * (1 + 1e-4)
        assert dt.max() / dt.min() > 5  # spread log-uniformly, not a constant
        assert mixer.dt_proj.weight.abs().max() <= config.dt_rank**-0.5
    untied = MambaLM(tiny_config(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.embedding.weight


def test_scan_backends_agree_chunked_and_ref():
    torch.manual_seed(0)
    chunked = MambaLM(tiny_config(scan="chunked", chunk_size=8)).eval()
    ref = MambaLM(tiny_config(scan="ref")).eval()
    ref.load_state_dict(chunked.state_dict())
    ids = random_ids(29, length=37)
    torch.testing.assert_close(chunked(ids), ref(ids), atol=1e-5, rtol=0)
    # gradients too: the chunked scan is what CPU training differentiates
    chunked(ids).logsumexp(-1).mean().backward()
    ref(ids).logsumexp(-1).mean().backward()
    for (name, a), b in zip(chunked.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_scan_backend_triton_agrees_with_ref():
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = dict(vocab_size=11, d_model=8, n_layers=1, d_state=4)  # d_inner 16: cheap in the interpreter
    ref = MambaLM(MambaConfig(**config, scan="ref")).to(device).eval()
    triton_model = MambaLM(MambaConfig(**config, scan="triton")).to(device).eval()
    triton_model.load_state_dict(ref.state_dict())
    ids = random_ids(11, batch=1, length=20).to(device)
    with torch.no_grad():
        torch.testing.assert_close(triton_model(ids), ref(ids), atol=1e-5, rtol=0)
    prefix, state = triton_model.prefill(ids[:, :17])  # Triton scan with the last state, then Triton steps
    steps = torch.stack([triton_model.step(ids[:, t], state) for t in range(17, 20)], dim=1)
    torch.testing.assert_close(torch.cat([prefix, steps], dim=1), ref(ids), atol=1e-5, rtol=0)


def test_import_does_not_import_triton():
    code = "import sys, minimodels.models.mamba, minimodels.generation.recurrent; print('triton' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(d_model=0), "d_model"),
        (dict(n_layers=-1), "n_layers"),
        (dict(d_state=0), "d_state"),
        (dict(expand=1.5), "expand"),
        (dict(d_conv=0), "d_conv"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(dt_rank=0), "dt_rank"),
        (dict(dt_rank="big"), "dt_rank"),
        (dict(dt_min=0.1, dt_max=0.1), "dt_min"),
        (dict(dt_min=0.0), "dt_min"),
        (dict(dt_init_floor=0.0), "dt_init_floor"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(scan="cuda"), "scan"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ValueError, match=f"MambaConfig.{match}"):
        tiny_config(**overrides)


def test_bad_inputs_raise_clear_errors():
    model = MambaLM(tiny_config()).eval()
    with pytest.raises(ValueError, match="input_ids must be"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="token_ids must be"):
        model.step(torch.zeros(2, 1, dtype=torch.long), model.init_state(2))
    with pytest.raises(ValueError, match="batch of 3"):
        model.step(torch.zeros(3, dtype=torch.long), model.init_state(2))
    with pytest.raises(ValueError, match="hidden_act"):
        mamba_config_from_hf(dict(vocab_size=10, hidden_size=8, num_hidden_layers=1, hidden_act="gelu"))


def test_checkpoint_round_trip(tmp_path):
    model = MambaLM(tiny_config(tie_embeddings=False)).eval()
    ids = random_ids(29, length=10)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "mamba"))
    assert isinstance(loaded, MambaLM) and loaded.config == model.config
    torch.testing.assert_close(loaded(ids), model(ids), atol=0, rtol=0)


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    text = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1, 3, 5, 7] * 200)  # a periodic sequence: easy to learn
    gen = torch.Generator().manual_seed(0)

    def get_batch(split):
        starts = torch.randint(0, len(text) - 33, (8,), generator=gen)
        idx = starts[:, None] + torch.arange(32)
        return text[idx], text[idx + 1]

    model = MambaLM(MambaConfig(vocab_size=8, d_model=32, n_layers=2, d_state=8, chunk_size=32))
    history = train(model, get_batch, TrainConfig(max_iters=60, lr=5e-3, warmup_iters=5, eval_interval=60,
                                                   eval_iters=2, progress=False))
    assert history.train_loss[0] > 1.8  # about log(8) at the start
    assert history.val_loss[-1] < 0.6 * history.train_loss[0], (history.train_loss[0], history.val_loss)


def test_untied_checkpoint_without_lm_head_is_refused():
    hf = hf_mamba("untied_bias")
    config = mamba_config_from_hf(hf.config.to_dict())
    state = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    with pytest.raises(ValueError, match="tie_word_embeddings=False, but the checkpoint holds no lm_head.weight"):
        mamba_state_from_hf(state, config)
    tied = mamba_config_from_hf({**hf.config.to_dict(), "tie_word_embeddings": True})
    assert torch.equal(mamba_state_from_hf(state, tied)["lm_head.weight"], state["backbone.embeddings.weight"])


def test_from_hf_names_missing_tensors():
    hf = hf_mamba("tied")
    hf.backbone.norm_f = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"from_hf: the Mamba checkpoint does not fit MambaLM: missing tensors "
                                         r"\['norm_f.weight'\], unexpected tensors \[\]"):
        from_hf(hf)


def test_out_of_vocabulary_ids_are_named_in_forward_prefill_and_step():
    model = MambaLM(tiny_config()).eval()
    bad = torch.tensor([[1, 29]])
    for call in (model, model.prefill):
        with pytest.raises(ValueError, match=r"input_ids must be token ids in \[0, vocab_size=29\), got ids from 1"):
            call(bad)
    with pytest.raises(ValueError, match=r"token_ids must be token ids in \[0, vocab_size=29\), got ids from -2"):
        model.step(torch.tensor([-2, 3]), model.init_state(2))


def test_time_steps_are_the_delta_the_scan_reads():
    """time_steps(h) is softplus(dt_proj(x_proj(conv(in_proj(h)))) + bias): check it by hand."""
    torch.manual_seed(0)
    model = MambaLM(tiny_config()).eval()
    mixer, c = model.layers[0].mixer, model.config
    hidden = torch.randn(2, 7, c.d_model)
    with torch.no_grad():
        x = mixer.in_proj(hidden)[..., : c.d_inner].transpose(1, 2)  # (B, d_inner, T)
        x = F.silu(F.conv1d(F.pad(x, (c.d_conv - 1, 0)), mixer.conv1d.weight, mixer.conv1d.bias, groups=c.d_inner))
        dt = mixer.x_proj(x.transpose(1, 2))[..., : c.dt_rank] @ mixer.dt_proj.weight.T  # (B, T, d_inner)
        expected = F.softplus(dt + mixer.dt_proj.bias).transpose(1, 2)
        torch.testing.assert_close(mixer.time_steps(hidden), expected, atol=1e-6, rtol=1e-5)
