"""Perplexity: a uniform model's perplexity is the vocabulary size; the strided evaluation scores exactly the tokens
an independent Hugging Face-style loop scores (labels masked with -100), and equals the full-context evaluation
when one window covers the text; corpus perplexity pools tokens; bits per byte and the entropy view; bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from minimodels import Llama, LlamaConfig
from minimodels.evaluation import (
    PerplexityResult,
    bits_per_byte,
    entropy_bits,
    nats_to_bits,
    perplexity,
    token_nll,
)

VOCAB = 37


def uniform_model(input_ids: torch.Tensor) -> torch.Tensor:
    """Zero logits: every token has probability 1 / VOCAB."""
    return torch.zeros(*input_ids.shape, VOCAB)


@pytest.fixture(scope="module")
def llama() -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, max_seq_len=64)).eval()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (50,), generator=torch.Generator().manual_seed(1))


def hf_style_strided(model, ids: torch.Tensor, max_length: int, stride: int) -> tuple[float, int]:
    """The loop of Hugging Face's "Perplexity of fixed-length models" guide, with exact sums: every window
    labels only its last trg_len tokens (the rest is -100) and the shifted cross-entropy sums the labelled ones."""
    seq_len = ids.numel()
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = ids[begin:end].unsqueeze(0)
        labels = input_ids.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            logits = model(input_ids)
        shift_logits, shift_labels = logits[0, :-1].double(), labels[0, 1:]
        nll_sum += F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum").item()
        n_tokens += int((shift_labels != -100).sum())
        prev_end = end
        if end == seq_len:
            break
    return nll_sum, n_tokens


def test_uniform_model_perplexity_is_vocab_size(ids):
    result = perplexity(uniform_model, [ids, ids[:7]], context_len=16, stride=8)
    assert result.ppl == pytest.approx(VOCAB, rel=1e-6)
    assert result.nll_per_token == pytest.approx(math.log(VOCAB), rel=1e-6)
    assert result.bits_per_token == pytest.approx(math.log2(VOCAB), rel=1e-6)
    assert result.n_tokens == 49 + 6
    assert result.bits_per_byte is None


def test_entropy_view_bits_and_nats_give_the_same_perplexity(llama, ids):
    result = perplexity(llama, [ids], context_len=20, stride=5)
    assert 2**result.bits_per_token == pytest.approx(math.exp(result.nll_per_token), rel=1e-12)
    assert 2**result.bits_per_token == pytest.approx(result.ppl, rel=1e-12)
    assert nats_to_bits(math.log(8)) == pytest.approx(3.0)
    uniform = torch.full((VOCAB,), 1 / VOCAB, dtype=torch.float64)
    assert float(entropy_bits(uniform)) == pytest.approx(math.log2(VOCAB))
    assert 2 ** float(entropy_bits(uniform)) == pytest.approx(VOCAB)  # perplexity of a distribution = 2^H
    assert float(entropy_bits(torch.tensor([0.0, 1.0, 0.0]))) == 0.0
    assert float(entropy_bits(torch.tensor([0.5, 0.25, 0.25]))) == pytest.approx(1.5)


def test_full_context_when_one_window_covers_the_text(llama, ids):
    with torch.no_grad():
        logp = F.log_softmax(llama(ids.unsqueeze(0))[0].double(), dim=-1)  # (T, V)
    full = -logp[:-1].gather(-1, ids[1:].unsqueeze(-1)).squeeze(-1)  # (T-1,) every token with its whole prefix
    for context_len, stride in [(50, 50), (50, 1), (64, 7), (200, 100)]:
        scored = token_nll(llama, ids, context_len=context_len, stride=stride)
        assert torch.equal(scored.positions, torch.arange(1, 50))
        torch.testing.assert_close(scored.nll, full, atol=1e-5, rtol=1e-5)
        result = perplexity(llama, [ids], context_len=context_len, stride=stride)
        assert result.ppl == pytest.approx(math.exp(float(full.mean())), rel=1e-5)


@pytest.mark.parametrize("context_len, stride", [(16, 4), (16, 16), (16, 1), (10, 7), (49, 48), (2, 1), (2, 2)])
def test_strided_equals_the_hugging_face_loop(llama, ids, context_len, stride):
    expected_sum, expected_count = hf_style_strided(llama, ids, context_len, stride)
    scored = token_nll(llama, ids, context_len=context_len, stride=stride)
    assert scored.nll.numel() == expected_count
    assert float(scored.nll.sum()) == pytest.approx(expected_sum, rel=1e-5)
    assert len(set(scored.positions.tolist())) == expected_count  # each token scored once
    result = perplexity(llama, [ids], context_len=context_len, stride=stride)
    assert result.n_tokens == expected_count
    assert result.ppl == pytest.approx(math.exp(expected_sum / expected_count), rel=1e-5)


def test_strided_windows_give_each_token_its_context(llama, ids):
    # With stride < context_len every token 1..N-1 is scored; a disjoint split skips each window's first token.
    assert torch.equal(token_nll(llama, ids, 16, 4).positions, torch.arange(1, 50))
    skipped = set(range(1, 50)) - set(token_nll(llama, ids, 16, 16).positions.tolist())
    assert skipped == {16, 32, 48}
    # Token 30 with stride 4: its window starts at 16 (the last window that reaches it scores it), so its
    # context is ids[16:30], which is what a direct call on that slice computes.
    scored = token_nll(llama, ids, 16, 4)
    with torch.no_grad():
        logp = F.log_softmax(llama(ids[16:31].unsqueeze(0))[0, -2].double(), dim=-1)
    index = scored.positions.tolist().index(30)
    assert float(scored.nll[index]) == pytest.approx(-float(logp[ids[30]]), rel=1e-5)


def test_corpus_perplexity_pools_tokens_not_text_perplexities(llama):
    gen = torch.Generator().manual_seed(2)
    docs = [torch.randint(0, VOCAB, (n,), generator=gen) for n in (40, 5, 12)]
    per_doc = [token_nll(llama, d, context_len=64).nll for d in docs]
    pooled = torch.cat(per_doc)
    result = perplexity(llama, docs, context_len=64)
    assert result.n_tokens == 39 + 4 + 11
    assert result.ppl == pytest.approx(math.exp(float(pooled.mean())), rel=1e-9)
    mean_of_ppls = sum(math.exp(float(n.mean())) for n in per_doc) / len(per_doc)
    assert abs(mean_of_ppls - result.ppl) > 1e-3  # the two are different quantities


def test_texts_with_encode_and_bits_per_byte(llama):
    alphabet = "abcdefghijklmnopqrstuvwxyz .,é€3"
    stoi = {c: i for i, c in enumerate(alphabet)}

    def encode(text):
        return [stoi[c] for c in text]

    texts = ["a café costs 3€", "hello, world."]
    result = perplexity(llama, texts, context_len=8, stride=4, encode=encode)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert result.n_bytes == n_bytes == (13 + 2 + 3) + 13  # é is 2 bytes, € is 3 bytes
    total = sum(float(token_nll(llama, encode(t), 8, 4).nll.sum()) for t in texts)
    assert result.bits_per_byte == pytest.approx(total / math.log(2) / n_bytes, rel=1e-9)
    assert bits_per_byte(total, n_bytes) == pytest.approx(result.bits_per_byte)
    by_ids = perplexity(llama, [encode(t) for t in texts], context_len=8, stride=4, n_bytes=n_bytes)
    assert by_ids.ppl == pytest.approx(result.ppl, rel=1e-9) and by_ids.bits_per_byte == result.bits_per_byte


def test_eval_mode_during_and_restored_after():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, dropout=0.5)).train()
    seq = list(range(20))
    first = perplexity(model, [seq], context_len=8, stride=4).ppl
    assert model.training
    assert perplexity(model, [seq], context_len=8, stride=4).ppl == first  # dropout off: deterministic


def test_short_documents_score_nothing(llama):
    assert token_nll(llama, [3], context_len=4).nll.numel() == 0
    assert token_nll(llama, [], context_len=4).positions.numel() == 0
    assert perplexity(llama, [[3], [1, 2]], context_len=4).n_tokens == 1


def test_bad_input(llama, ids):
    with pytest.raises(ValueError, match="context_len must be an int >= 2"):
        token_nll(llama, ids, context_len=1)
    with pytest.raises(ValueError, match=r"stride must be an int in \[1, context_len=8\].*got 9"):
        token_nll(llama, ids, context_len=8, stride=9)
    with pytest.raises(ValueError, match="stride must be an int in"):
        perplexity(llama, [ids], context_len=8, stride=0)
    with pytest.raises(TypeError, match="documents must be a list of documents.*got str"):
        perplexity(llama, "some text", context_len=8)
    with pytest.raises(TypeError, match="documents must be a list of documents.*got Tensor"):
        perplexity(llama, ids, context_len=8)
    with pytest.raises(ValueError, match="documents must hold at least one document"):
        perplexity(llama, [], context_len=8)
    with pytest.raises(TypeError, match="documents must be all texts or all token ids"):
        perplexity(llama, ["ab", [1, 2]], context_len=8, encode=list)
    with pytest.raises(TypeError, match="documents are texts: pass encode"):
        perplexity(llama, ["ab"], context_len=8)
    with pytest.raises(TypeError, match=r"documents\[0\] must hold integer token ids, got dtype torch.float32"):
        perplexity(llama, [ids.float()], context_len=8)
    with pytest.raises(ValueError, match=r"documents\[1\] must hold non-negative token ids, found -1"):
        perplexity(llama, [[1, 2], [1, -1]], context_len=8)
    with pytest.raises(TypeError, match=r"ids must hold int token ids, found 1.5"):
        token_nll(llama, [1, 1.5], context_len=8)
    with pytest.raises(ValueError, match="ids must be a 1-D tensor of token ids, got shape \\(1, 50\\)"):
        token_nll(llama, ids.unsqueeze(0), context_len=8)
    with pytest.raises(ValueError, match=f"token id {VOCAB} is out of range for the model's vocabulary of {VOCAB}"):
        token_nll(llama, [1, VOCAB], context_len=8)  # checked against config.vocab_size before the call
    with pytest.raises(ValueError, match=f"token id {VOCAB + 3} is out of range for the model's vocabulary of {VOCAB}"):
        token_nll(uniform_model, [VOCAB + 3, 1], context_len=8)  # checked against the logits after the call
    with pytest.raises(ValueError, match=r"must return logits \(1, T, V\), got \(1, 5\)"):
        token_nll(lambda x: torch.zeros(1, 5), [1, 2, 3, 4, 5], context_len=8)
    with pytest.raises(TypeError, match="model must be callable"):
        token_nll("gpt", [1, 2], context_len=8)
    with pytest.raises(ValueError, match="no token was scored: every document is shorter than 2 tokens"):
        perplexity(llama, [[1], [2]], context_len=8)
    with pytest.raises(ValueError, match="n_bytes must be None or a positive int, got 0"):
        perplexity(llama, [ids], context_len=8, n_bytes=0)
    with pytest.raises(ValueError, match="n_bytes must be a positive int"):
        bits_per_byte(1.0, 0)
    with pytest.raises(ValueError, match="probs must be non-negative and sum to 1"):
        entropy_bits(torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match=r"PerplexityResult.n_tokens=0: must be a positive int"):
        PerplexityResult(total_nll=1.0, n_tokens=0)
