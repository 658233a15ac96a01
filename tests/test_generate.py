import pytest
import torch

from minimodels import GPT, GPTConfig, generate
from minimodels.generation.generate import filter_logits, next_token


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
