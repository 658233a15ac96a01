"""Full-recompute generation, the sampling rule, and the checks and mode handling all three decoders share."""

import re

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from minimodels import GPT, GPTConfig, Llama, LlamaConfig, MambaConfig, MambaLM, generate, generate_cached
from minimodels.generation.recurrent import generate_recurrent
from minimodels.generation.sampling import filter_logits, next_token


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()


def test_greedy_picks_the_argmax_of_a_full_forward():
    model = tiny_gpt()
    prompt = torch.tensor([[1, 2, 3]])
    out = generate(model, prompt, 4, greedy=True)
    ids = prompt
    for _ in range(4):  # an independent loop: argmax of the last logits
        ids = torch.cat([ids, model(ids[:, -8:])[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)


def test_context_is_cropped_to_the_block_size():
    model = tiny_gpt()
    out = generate(model, torch.zeros(2, 3, dtype=torch.long), 20, seed=0)
    assert out.shape == (2, 23)  # longer than block_size=8 without error


def test_top_k_restricts_the_sampled_set():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]).repeat(500, 1)
    picks = next_token(logits, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(picks.flatten().tolist()) == {3, 4}


def test_top_p_restricts_the_sampled_set():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log().repeat(2000, 1)
    picks = next_token(logits, top_p=0.75, generator=torch.Generator().manual_seed(0))
    assert set(picks.flatten().tolist()) == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3
    kept = filter_logits(probs.log(), top_p=0.8)
    assert torch.isinf(kept).tolist() == [[False, False, True, True]]
    assert torch.isfinite(filter_logits(probs.log(), top_p=0.1)).sum() == 1  # the top token always stays


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    model = tiny_gpt()
    prompt = torch.tensor([[1, 2]])
    a = generate(model, prompt, 12, temperature=2.0, seed=7)
    b = generate(model, prompt, 12, temperature=2.0, seed=7)
    c = generate(model, prompt, 12, temperature=2.0, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_bad_arguments():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.tensor([[1]]), 2, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        next_token(torch.zeros(1, 5), top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        next_token(torch.zeros(1, 5), top_p=1.5)
    with pytest.raises(ValueError, match="input_ids"):
        generate(model, torch.tensor([1, 2]), 2)


def tiny_llama():
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=13, dim=16, n_layers=1, n_heads=2, max_seq_len=32))


def tiny_mamba():
    torch.manual_seed(0)
    return MambaLM(MambaConfig(vocab_size=13, d_model=8, n_layers=1, d_state=4))


DECODERS = [(generate, tiny_gpt), (generate_cached, tiny_llama), (generate_recurrent, tiny_mamba)]
DECODER_IDS = ["generate", "generate_cached", "generate_recurrent"]


class FailsOnThirdCall(torch.nn.Module):
    """Wraps a model; its third forward (or step) raises, as a model can fail halfway through decoding."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.config = model, 0, model.config
        self.seen_training = []  # the mode the wrapped model was in at each call

    def _count(self):
        self.calls += 1
        self.seen_training.append(self.model.training)
        if self.calls == 3:
            raise RuntimeError("fails on purpose")

    def forward(self, ids, cache=None):
        self._count()
        return self.model(ids) if cache is None else self.model(ids, cache=cache)

    def prefill(self, ids):
        self._count()
        return self.model.prefill(ids)

    def step(self, token_ids, state):
        self._count()
        return self.model.step(token_ids, state)


@pytest.mark.parametrize("decode, make", DECODERS, ids=DECODER_IDS)
def test_decoding_runs_in_eval_mode_and_restores_train_mode(decode, make):
    model = make().train()
    wrapped = FailsOnThirdCall(model)
    wrapped.calls = -100  # never reaches 3 here
    out = decode(wrapped, torch.tensor([[1, 2, 3]]), 4, greedy=True)
    assert out.shape == (1, 7)
    assert wrapped.seen_training and not any(wrapped.seen_training)  # every call ran in eval mode
    assert model.training and wrapped.training  # and the train mode is back
    model.eval()
    decode(model, torch.tensor([[1, 2, 3]]), 2, greedy=True)
    assert not model.training  # an eval model stays in eval mode


@pytest.mark.parametrize("decode, make", DECODERS, ids=DECODER_IDS)
def test_train_mode_is_restored_when_decoding_raises(decode, make):
    wrapped = FailsOnThirdCall(make()).train()
    with pytest.raises(RuntimeError, match="fails on purpose"):
        decode(wrapped, torch.tensor([[1, 2, 3]]), 5, greedy=True)
    assert wrapped.calls == 3 and wrapped.training and wrapped.model.training
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("decode, make", DECODERS, ids=DECODER_IDS)
def test_same_prompts_as_lists_or_as_a_tensor(decode, make):
    model = make().eval()
    prompts = [[1, 2, 3], [4, 5, 6]]
    from_lists = decode(model, prompts, 3, temperature=1.5, seed=3)
    assert torch.equal(from_lists, decode(model, torch.tensor(prompts), 3, temperature=1.5, seed=3))


@pytest.mark.parametrize("decode, make", DECODERS, ids=DECODER_IDS)
def test_unequal_prompt_lengths_are_refused(decode, make):
    with pytest.raises(ValueError, match=r"prompts have unequal lengths \[3, 1\].*no padding.*on its own"):
        decode(make(), [[1, 2, 3], [4]], 3)


@pytest.mark.parametrize("decode, make", DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    "prompt, error, match",
    [
        (torch.tensor([[1, 13]]), ValueError,
         r"input_ids must be token ids in \[0, vocab_size=13\), got ids from 1 to 13"),
        (torch.tensor([[-1, 2]]), ValueError, r"input_ids must be token ids .*got ids from -1 to 2"),
        (torch.tensor([[1.0, 2.0]]), TypeError, r"input_ids must hold integer token ids, got dtype torch.float32"),
        (torch.tensor([1, 2]), ValueError, r"input_ids must be \(batch, time\).*got shape \(2,\)"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, r"input_ids must be \(batch, time\) .*time >= 1"),
        ("1 2 3", TypeError, r"input_ids must be a \(batch, time\) tensor of token ids or a list of prompts"),
    ],
    ids=["too_large", "negative", "float", "one_dim", "empty", "string"],
)
def test_bad_prompts_are_named(decode, make, prompt, error, match):
    with pytest.raises(error, match=f"{decode.__name__}: {match}"):
        decode(make(), prompt, 2)


@pytest.mark.parametrize("decode, make", DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_new_tokens=2.5), TypeError, "max_new_tokens must be an int, got float"),
        (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0, got -1"),
        (dict(seed=-3), ValueError, "seed must be None or a non-negative int, got -3"),
        (dict(temperature=0.0), ValueError, r"temperature must be > 0 \(use greedy=True"),
        (dict(top_k=0), ValueError, "top_k must be None or an int >= 1, got 0"),
        (dict(top_p=0.0), ValueError, r"top_p must be None or in \(0, 1\], got 0.0"),
    ],
)
def test_bad_settings_are_named_before_any_step(decode, make, kwargs, error, match):
    model = FailsOnThirdCall(make())
    with pytest.raises(error, match=match):
        decode(model, torch.tensor([[1, 2]]), **{"max_new_tokens": 2, **kwargs})
    assert model.calls == 0


@pytest.mark.parametrize("decode", [generate, generate_cached, generate_recurrent], ids=DECODER_IDS)
def test_a_hugging_face_model_is_sent_to_from_hf(decode):
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=13, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(TypeError, match=r"GPT2LMHeadModel is a Hugging Face transformers model.*minimodels.from_hf"):
        decode(hf, torch.tensor([[1, 2]]), 2)


@pytest.mark.parametrize("make, other", [(tiny_gpt, "generate()"), (tiny_mamba, "generate_recurrent()")],
                         ids=["GPT", "MambaLM"])
def test_generate_cached_names_the_decoder_a_model_without_cache_needs(make, other):
    model = make()
    expected = f"{type(model).__name__} takes no cache: use {other}"
    with pytest.raises(TypeError, match="generate_cached needs a model that reads and fills a KV cache.*"
                                        + re.escape(expected)):
        generate_cached(model, torch.tensor([[1, 2]]), 2)


def test_generate_recurrent_refuses_a_transformer():
    with pytest.raises(TypeError, match=r"generate_recurrent needs a recurrent model.*Llama has none: use "
                                        r"generate_cached\(\)"):
        generate_recurrent(tiny_llama(), torch.tensor([[1, 2]]), 2)


def test_the_global_rng_is_untouched_by_seeded_sampling():
    model = tiny_gpt()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(model, torch.tensor([[1, 2]]), 5, seed=4)
    assert torch.equal(torch.rand(3), expected)
