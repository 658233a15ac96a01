"""Recurrent encoder-decoder with and without additive attention, and the reversal toy task."""

import pytest
import torch
import torch.nn.functional as F

from minimodels.models.seq2seq import AdditiveAttention, Seq2Seq, Seq2SeqConfig, teacher_forcing_loss
from minimodels.training.loop import TrainConfig, train
from minimodels.training.toy_tasks import (
    BOS,
    EOS,
    PAD,
    ReversalTask,
    accuracy_by_length,
    exact_match,
    make_get_batch,
)


def small_model(attention: bool, vocab_size: int = 9, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(Seq2SeqConfig(vocab_size=vocab_size, emb_size=8, hidden_size=16, attention=attention,
                                 attn_size=12, max_output_len=12))


def padded_sources() -> torch.Tensor:
    return torch.tensor([
        [3, 4, 5, 6, 7],
        [8, 3, 4, PAD, PAD],
        [5, PAD, PAD, PAD, PAD],
    ])


# ---------------------------------------------------------------- an independent decoder, written here


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's GRU cell from its definition: gates r, z and candidate n from stacked (r, z, n) weights."""
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    H = h.numel()
    r = torch.sigmoid(gi[:H] + gh[:H])
    z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
    n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1 - z) * n + z * h


class ByHand:
    """One example at a time, no batching or padding: the encoder GRU over the real tokens only, Bahdanau
    attention over them (context from the previous decoder state), the decoder GRU cell on [embedding;
    context], logits from [state; context; embedding]. Uses the module's weights, none of its code."""

    def __init__(self, model: Seq2Seq):
        self.m = model

    def encode(self, tokens: list[int]) -> torch.Tensor:
        gru = self.m.encoder.gru
        h = torch.zeros(gru.hidden_size)
        states = []
        for t in tokens:
            h = gru_step(self.m.encoder.embed.weight[t], h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0,
                         gru.bias_hh_l0)
            states.append(h)
        return torch.stack(states)  # (L, H)

    def step(self, prev: int, state: torch.Tensor, states: torch.Tensor):
        dec = self.m.decoder
        emb = dec.embed.weight[prev]
        if dec.attention is None:
            context, weights = states[-1], None
        else:
            a = dec.attention
            scores = torch.stack([a.v.weight[0] @ torch.tanh(a.W.weight @ state + a.U.weight @ h_j + a.U.bias)
                                  for h_j in states])
            weights = torch.softmax(scores, dim=0)  # (L,)
            context = weights @ states
        cell = dec.cell
        state = gru_step(torch.cat([emb, context]), state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        logits = dec.out.weight @ torch.cat([state, context, emb]) + dec.out.bias
        return logits, state, weights

    def teacher_forcing(self, src: list[int], tgt_in: list[int]) -> torch.Tensor:
        states = self.encode(src)
        state, rows = states[-1], []
        for prev in tgt_in:
            logits, state, _ = self.step(prev, state, states)
            rows.append(logits)
        return torch.stack(rows)  # (T, V)

    def greedy(self, src: list[int], max_len: int) -> tuple[list[int], list[torch.Tensor]]:
        states = self.encode(src)
        state, prev, tokens, weights = states[-1], BOS, [], []
        for _ in range(max_len):
            logits, state, w = self.step(prev, state, states)
            prev = int(logits.argmax())
            tokens.append(prev)
            weights.append(w)
            if prev == EOS:
                break
        return tokens, weights


def real_tokens(row: torch.Tensor) -> list[int]:
    return [t for t in row.tolist() if t != PAD]


@pytest.mark.parametrize("attention", [False, True])
def test_teacher_forcing_equals_a_decoder_written_here(attention):
    model = small_model(attention, seed=1).eval()
    src = padded_sources()  # (3, 5) right-padded
    tgt_in = torch.tensor([[BOS, 7, 6, 5], [BOS, 4, 3, 8], [BOS, 5, PAD, PAD]])  # (3, 4)
    with torch.no_grad():
        logits = model(src, tgt_in)
        assert logits.shape == (3, 4, 9)
        by_hand = ByHand(model)
        for i in range(3):
            expected = by_hand.teacher_forcing(real_tokens(src[i]), tgt_in[i].tolist())
            torch.testing.assert_close(logits[i], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention, seed", [(False, 2), (True, 11)])
def test_greedy_decode_equals_a_decoder_written_here(attention, seed):
    """Weights 3x the init: rows emit EOS at different steps (one row never does with attention)."""
    model = small_model(attention, seed=seed).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    src = padded_sources()
    tokens, weights = model.greedy_decode(src, max_len=10)
    assert tokens.dtype == torch.long and tokens.shape[0] == 3 and 1 <= tokens.shape[1] <= 10
    assert (weights is None) == (not attention)
    by_hand = ByHand(model)
    with torch.no_grad():
        lengths = []
        for i in range(3):
            expected, expected_weights = by_hand.greedy(real_tokens(src[i]), max_len=10)
            lengths.append(len(expected))
            n = len(expected)
            assert tokens[i, :n].tolist() == expected
            assert (tokens[i, n:] == PAD).all()  # after EOS the batch decoder writes PAD
            if attention:
                L = len(real_tokens(src[i]))
                torch.testing.assert_close(weights[i, :n, :L], torch.stack(expected_weights), atol=1e-5, rtol=1e-5)
                assert (weights[i, :n, L:] == 0).all() and (weights[i, n:] == 0).all()
        assert len(set(lengths)) == 3  # three different stopping steps: the PAD-after-EOS logic is exercised
        assert tokens.shape[1] == max(lengths)  # the batch stops when its last row has stopped


# ---------------------------------------------------------------- attention and padding


def test_additive_attention_matches_the_formula():
    torch.manual_seed(0)
    attn = AdditiveAttention(query_size=6, key_size=5, attn_size=4)
    query, states = torch.randn(2, 6), torch.randn(2, 3, 5)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    context, weights = attn(query, states, attn.project_keys(states), mask)
    W, U, b, v = attn.W.weight, attn.U.weight, attn.U.bias, attn.v.weight[0]
    for i in range(2):
        n = int(mask[i].sum())
        scores = torch.stack([v @ torch.tanh(W @ query[i] + U @ states[i, j] + b) for j in range(n)])
        expected = torch.softmax(scores, dim=0)
        torch.testing.assert_close(weights[i, :n], expected)
        torch.testing.assert_close(context[i], (expected[:, None] * states[i, :n]).sum(0))


def test_attention_weights_sum_to_one_on_real_tokens_and_vanish_on_padding():
    model = small_model(attention=True).eval()
    src = padded_sources()
    mask = src != PAD
    enc = model.encode(src)
    state = enc.final
    for token in (BOS, 4, 5):
        _, state, _, weights = model.decoder.step(torch.full((3,), token), state, enc)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3))
        assert (weights[~mask] == 0).all()
    _, weights = model.greedy_decode(src, max_len=8)
    assert (weights[:, :, ~mask.any(0)] == 0).all()
    assert (weights.masked_select(~mask[:, None, :].expand_as(weights)) == 0).all()
    sums = weights.sum(-1)  # (B, T): 1 while a row is decoding, 0 once it has finished
    assert torch.allclose(sums[:, 0], torch.ones(3))
    assert ((sums - 1).abs() < 1e-5).logical_or(sums == 0).all()


@pytest.mark.parametrize("attention", [False, True])
def test_extra_padding_changes_nothing(attention):
    """Right padding must be invisible: same logits with 0 or 3 extra PAD columns in the source."""
    model = small_model(attention).eval()
    src = padded_sources()
    wider = torch.cat([src, torch.full((3, 3), PAD)], dim=1)
    tgt_in = torch.tensor([[BOS, 7, 6], [BOS, 4, 3], [BOS, 5, PAD]])
    with torch.no_grad():
        torch.testing.assert_close(model(wider, tgt_in), model(src, tgt_in))


def test_teacher_forcing_loss_ignores_pad_targets():
    model = small_model(attention=True)
    src = padded_sources()
    tgt_in = torch.tensor([[BOS, 7, 6], [BOS, 4, 3], [BOS, 5, PAD]])
    tgt_out = torch.tensor([[7, 6, 5], [4, 3, 8], [5, EOS, PAD]])
    loss = teacher_forcing_loss(model, (src, tgt_in), tgt_out)
    logits = model(src, tgt_in)
    keep = tgt_out != PAD
    expected = -F.log_softmax(logits, -1).gather(-1, tgt_out[..., None]).squeeze(-1)[keep].mean()
    torch.testing.assert_close(loss, expected)


# ---------------------------------------------------------------- the toy task


def test_reversal_task_is_deterministic_for_a_seed():
    task = ReversalTask(n_symbols=7, min_len=2, max_len=9)
    a = task.sample(16, torch.Generator().manual_seed(5))
    b = task.sample(16, torch.Generator().manual_seed(5))
    c = task.sample(16, torch.Generator().manual_seed(6))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.src, c.src) or not torch.equal(a.lengths, c.lengths)


def test_reversal_task_targets_are_the_reversed_sources():
    task = ReversalTask(n_symbols=7, min_len=2, max_len=9)
    batch = task.sample(64, torch.Generator().manual_seed(0))
    assert batch.lengths.min() >= 2 and batch.lengths.max() <= 9
    assert batch.src.shape[1] == int(batch.lengths.max())
    assert batch.tgt_in.shape == batch.tgt_out.shape == (64, batch.src.shape[1] + 1)
    for src, tgt_in, tgt_out, n in zip(*(t.tolist() for t in batch), strict=True):
        tokens = src[:n]
        assert all(3 <= t < task.vocab_size for t in tokens)
        assert src[n:] == [PAD] * (len(src) - n)
        assert tgt_out == tokens[::-1] + [EOS] + [PAD] * (len(src) - n)
        assert tgt_in == [BOS] + tokens[::-1] + [PAD] * (len(src) - n)


def test_make_get_batch_splits_are_seeded_streams():
    task = ReversalTask(n_symbols=5, min_len=3, max_len=6)
    first, second = make_get_batch(task, 8, seed=1), make_get_batch(task, 8, seed=1)
    (src_a, _), _ = first("train")
    (src_b, _), _ = second("train")
    (src_val, _), _ = first("val")
    assert torch.equal(src_a, src_b)
    assert not torch.equal(src_a, src_val[:, : src_a.shape[1]]) or src_a.shape != src_val.shape
    with pytest.raises(ValueError, match="split"):
        first("test")


def test_exact_match_and_accuracy_by_length():
    target = torch.tensor([[5, 4, EOS, PAD], [3, EOS, PAD, PAD], [6, 6, 6, EOS]])
    pred = torch.tensor([
        [5, 4, EOS, 7, 7],  # right; what follows EOS does not count
        [3, 3, PAD, PAD, PAD],  # no EOS where it belongs
        [6, 6, 6, EOS, PAD],  # right
    ])
    assert exact_match(pred, target).tolist() == [True, False, True]
    assert exact_match(pred[:, :2], target).tolist() == [False, False, False]  # too short to hold EOS
    lengths = torch.tensor([2, 1, 3])
    assert accuracy_by_length(exact_match(pred, target), lengths) == {1: 0.0, 2: 1.0, 3: 1.0}
    with pytest.raises(ValueError, match="pred and target"):
        exact_match(pred[0], target)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": -3}, "vocab_size"),
        ({"emb_size": 2.5}, "emb_size"),
        ({"attn_size": 0}, "attn_size"),
        ({"max_output_len": 0}, "max_output_len"),
        ({"attention": "yes"}, "attention"),
        ({"vocab_size": 5, "eos_id": 5}, "eos_id"),
        ({"pad_id": -1}, "pad_id"),
        ({"bos_id": 0}, "distinct"),
    ],
)
def test_config_rejects_impossible_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Seq2SeqConfig(**kwargs)


def test_task_and_decode_reject_bad_arguments():
    with pytest.raises(ValueError, match="max_len=3 must be >= min_len=5"):
        ReversalTask(min_len=5, max_len=3)
    with pytest.raises(ValueError, match="n_symbols"):
        ReversalTask(n_symbols=0)
    model = small_model(attention=True)
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(padded_sources(), max_len=13)
    with pytest.raises(ValueError, match="src must be"):
        model.encode(torch.tensor([3, 4, 5]))
    with pytest.raises(ValueError, match="non-pad"):
        model.encode(torch.tensor([[3, 4], [PAD, PAD]]))


# ---------------------------------------------------------------- it learns


def test_attention_model_learns_to_reverse_short_sequences():
    task = ReversalTask(n_symbols=6, min_len=2, max_len=6)
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=task.vocab_size, emb_size=16, hidden_size=48, attn_size=24,
                                  attention=True, max_output_len=8))
    config = TrainConfig(max_iters=150, lr=1e-2, warmup_iters=10, weight_decay=0.0, eval_interval=150,
                         eval_iters=1, progress=False)
    history = train(model, make_get_batch(task, 64, seed=0), config, loss_fn=teacher_forcing_loss)
    assert history.train_loss[-1] < history.train_loss[0] / 5
    held_out = task.sample(300, torch.Generator().manual_seed(123))
    tokens, _ = model.eval().greedy_decode(held_out.src, max_len=8)
    accuracy = exact_match(tokens, held_out.tgt_out).float().mean().item()
    assert accuracy >= 0.9, f"exact match {accuracy:.3f}"
