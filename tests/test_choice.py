"""Multiple-choice scoring: log-likelihoods and every normalization equal a hand computation with a bigram model
whose probabilities are written out; the harness's tokenization (context trailing space moved, joint encoding);
a real Llama against a direct forward; left truncation; bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minimodels import Llama, LlamaConfig
from minimodels.evaluation import ChoiceScores, score_choices

ALPHABET = "qab ?é"
STOI = {c: i for i, c in enumerate(ALPHABET)}
V = len(ALPHABET)


def encode(text: str) -> list[int]:
    return [STOI[c] for c in text]


# p(next char | previous char), written by hand; the mass not listed is spread evenly over the other characters.
BIGRAM = {
    "q": {"a": 0.5, "b": 0.2, " ": 0.1},
    "a": {"a": 0.1, "b": 0.1},
    "b": {"b": 0.9},
    " ": {"a": 0.3, "b": 0.3, "é": 0.3},
    "?": {" ": 0.8},
    "é": {"é": 0.5},
}


def bigram_prob(prev: str, nxt: str) -> float:
    listed = BIGRAM[prev]
    if nxt in listed:
        return listed[nxt]
    return (1 - sum(listed.values())) / (V - len(listed))


class Bigram(torch.nn.Module):
    """logits[t] = log p(. | input_ids[t]): the next character depends only on the current one."""

    def __init__(self):
        super().__init__()
        table = [[math.log(bigram_prob(p, n)) for n in ALPHABET] for p in ALPHABET]
        self.table = torch.nn.Parameter(torch.tensor(table))

    def forward(self, input_ids):
        return self.table[input_ids]  # (B, T, V)


def hand_loglik(context: str, continuation: str) -> float:
    text = context + continuation
    return sum(math.log(bigram_prob(text[i - 1], text[i])) for i in range(len(context), len(text)))


def test_hand_computation_and_normalizations():
    context, choices = "q", ["a", "bbb", "bé"]
    scores = score_choices(Bigram(), context, choices, encode=encode)
    expected = [hand_loglik(context, c) for c in choices]
    assert scores.loglik == pytest.approx(expected, abs=1e-6)
    assert scores.n_tokens == (1, 3, 2)
    assert scores.n_bytes == (1, 3, 3)  # é is two bytes in UTF-8
    assert scores.n_chars == (1, 3, 2)
    assert scores.loglik_per_token == pytest.approx([e / n for e, n in zip(expected, (1, 3, 2), strict=True)], abs=1e-6)
    assert scores.loglik_per_byte == pytest.approx([e / n for e, n in zip(expected, (1, 3, 3), strict=True)], abs=1e-6)
    # log p: "a" = log .5 = -0.69; "bbb" = log .2 + 2 log .9 = -1.82 (per token -0.61); "bé" = log .2 + log .02.
    assert scores.pred == int(np.argmax(expected)) == 0  # the short answer wins on the raw sum
    assert scores.pred_per_token == 1  # per token the long answer wins
    assert scores.pred_per_byte == 1 and scores.pred_per_char == 1
    assert scores.is_greedy == (True, False, False)  # "a" is the most likely next character after "q"


def test_trailing_space_of_the_context_moves_to_the_continuation():
    # Harness rule: context "q?" + " " -> context "q?", continuation " " + choice. The space is scored as part
    # of the continuation, but normalization counts only the choice's own bytes.
    scores = score_choices(Bigram(), "q? ", ["a", "é"], encode=encode)
    expected = [hand_loglik("q?", " a"), hand_loglik("q?", " é")]
    assert scores.loglik == pytest.approx(expected, abs=1e-6)
    assert scores.n_tokens == (2, 2)
    assert scores.n_bytes == (1, 2)


def test_continuation_is_the_joint_encoding_after_the_context():
    # A tokenizer that merges "ab" into one token: encode("qa") = [q, a] but encode("qa" + "b") = [q, ab],
    # so the joint encoding cut after two tokens leaves nothing -> a clear error, not a silent empty score.
    vocab = {"q": 0, "a": 1, "b": 2, "ab": 3}

    def merging_encode(text):
        out, i = [], 0
        while i < len(text):
            if text.startswith("ab", i):
                out.append(vocab["ab"])
                i += 2
            else:
                out.append(vocab[text[i]])
                i += 1
        return out

    model = lambda ids: torch.zeros(*ids.shape, 4)  # noqa: E731 - a uniform model over 4 tokens
    with pytest.raises(ValueError, match=r"choices\[0\] gives no continuation token"):
        score_choices(model, "qa", ["b"], encode=merging_encode)
    scores = score_choices(model, "q", ["ab", "a"], encode=merging_encode)
    assert scores.n_tokens == (1, 1)
    assert scores.loglik == pytest.approx([-math.log(4)] * 2, abs=1e-6)


def test_llama_against_a_direct_forward():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4)).eval()
    context = [5, 9, 2, 33, 7]
    choices = [[1], [4, 4, 8], [49, 0]]
    scores = score_choices(model, torch.tensor(context), choices)
    for i, cont in enumerate(choices):
        ids = torch.tensor(context + cont)
        with torch.no_grad():
            logp = F.log_softmax(model(ids.unsqueeze(0))[0].double(), dim=-1)  # (T, V)
        expected = sum(float(logp[len(context) + k - 1, tok]) for k, tok in enumerate(cont))
        assert scores.loglik[i] == pytest.approx(expected, abs=1e-5)
    assert scores.n_bytes is None and scores.loglik_per_byte is None and scores.pred_per_byte is None
    assert scores.pred_per_char is None


def test_max_length_cuts_the_context_from_the_left():
    torch.manual_seed(1)
    model = Llama(LlamaConfig(vocab_size=20, dim=16, n_layers=1, n_heads=2)).eval()
    context, choices = list(range(1, 13)), [[3, 4], [5, 6, 7]]
    truncated = score_choices(model, context, choices, max_length=6)
    for i, cont in enumerate(choices):
        keep = 6 + 1 - len(cont)  # the model reads 6 tokens: the last context tokens and cont[:-1]
        alone = score_choices(model, context[-keep:], [cont])
        assert truncated.loglik[i] == pytest.approx(alone.loglik[0], abs=1e-6)
    assert score_choices(model, context, choices).loglik != pytest.approx(truncated.loglik, abs=1e-6)


def test_eval_mode_restored():
    model = Bigram().train()
    score_choices(model, "q", ["a"], encode=encode)
    assert model.training


def test_ties_pick_the_first_choice():
    scores = ChoiceScores(loglik=(-1.0, -1.0), n_tokens=(1, 1), is_greedy=(False, False))
    assert scores.pred == 0 == scores.pred_per_token


def test_bad_input():
    model = Bigram()
    with pytest.raises(ValueError, match="choices must hold at least one continuation"):
        score_choices(model, "q", [], encode=encode)
    with pytest.raises(TypeError, match="choices must be a list of continuations, got str"):
        score_choices(model, "q", "a", encode=encode)
    with pytest.raises(TypeError, match="context and choices are texts: pass encode"):
        score_choices(model, "q", ["a"])
    with pytest.raises(TypeError, match=r"context is a string, so every choice must be one; choices\[1\] is list"):
        score_choices(model, "q", ["a", [1]], encode=encode)
    with pytest.raises(TypeError, match="encode is only for texts"):
        score_choices(model, [0], [[1]], encode=encode)
    with pytest.raises(ValueError, match="context gives no token"):
        score_choices(model, "", ["a"], encode=encode)
    with pytest.raises(ValueError, match=r"choices\[0\] gives no continuation token"):
        score_choices(model, [0], [[]])
    with pytest.raises(ValueError, match="max_length must be None or a positive int, got 0"):
        score_choices(model, "q", ["a"], encode=encode, max_length=0)
    with pytest.raises(ValueError, match=r"choices\[0\] has 3 tokens, more than max_length=2"):
        score_choices(model, "q", ["bbb"], encode=encode, max_length=2)
    with pytest.raises(ValueError, match=f"token id {V} is out of range for the model's vocabulary of {V}"):
        score_choices(model, [0], [[V]])
    with pytest.raises(TypeError, match=r"choices\[0\] must hold int token ids"):
        score_choices(model, [0], [["a"]])
    with pytest.raises(TypeError, match="model must be callable"):
        score_choices(None, "q", ["a"], encode=encode)
