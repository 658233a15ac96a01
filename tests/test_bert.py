import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig as HFBertConfig
from transformers import BertModel

from minimodels import from_hf, load_checkpoint, save_checkpoint
from minimodels.models.bert import IGNORE_INDEX, Bert, BertConfig, mask_tokens, mean_pool, mlm_loss


def tiny_config(**kw):
    defaults = dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    return BertConfig(**{**defaults, **kw})


def hf_bert(seed=0, pooler=True, **kw):
    torch.manual_seed(seed)
    defaults = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64)
    model = BertModel(HFBertConfig(**{**defaults, **kw}), add_pooling_layer=pooler).eval()
    with torch.no_grad():  # move layer norms and biases off their init values so that every tensor matters
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def padded_batch(vocab_size, lengths, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    segments = (torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None] // 2).long() * mask  # A then B
    return ids, mask, segments


@pytest.mark.parametrize("pooler", [True, False])
@pytest.mark.parametrize("kw", [
    {},
    {"hidden_act": "gelu_new", "layer_norm_eps": 1e-6, "num_hidden_layers": 3},
    {"hidden_size": 48, "num_attention_heads": 6, "intermediate_size": 80, "type_vocab_size": 3},
])
def test_from_hf_bert_hidden_states_match_at_real_tokens(pooler, kw):
    hf = hf_bert(pooler=pooler, **kw)
    ours = from_hf(hf)
    assert isinstance(ours, Bert) and (ours.pooler is not None) == pooler
    ids, mask, segments = padded_batch(101, [24, 17, 5], 24)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, token_type_ids=segments)
        hidden = ours(ids, mask, segments)
    real = mask.bool()
    assert hidden.shape == expected.last_hidden_state.shape == (3, 24, hf.config.hidden_size)
    torch.testing.assert_close(hidden[real], expected.last_hidden_state[real], atol=1e-4, rtol=0)
    if pooler:
        torch.testing.assert_close(ours.pool(hidden), expected.pooler_output, atol=1e-4, rtol=0)
    else:
        with pytest.raises(ValueError, match="no pooler"):
            ours.pool(hidden)


def test_from_hf_bert_without_mask_and_segments_uses_zeros():
    hf = hf_bert(pooler=False)
    ours = from_hf(hf)
    ids = torch.randint(0, 101, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(input_ids=ids).last_hidden_state, atol=1e-4, rtol=0)


def test_from_hf_refuses_relative_positions():
    hf = hf_bert(pooler=False)
    hf.config.position_embedding_type = "relative_key"
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        from_hf(hf)


def test_every_token_sees_later_tokens_but_never_padding():
    torch.manual_seed(0)
    model = Bert(tiny_config()).eval()
    x = torch.randint(1, 50, (1, 10))
    y = x.clone()
    y[0, 7] = (y[0, 7] + 1) % 50 or 1
    with torch.no_grad():
        a, b = model(x), model(y)
        assert not torch.allclose(a[:, :7], b[:, :7])  # bidirectional: an earlier position changes
        padded = torch.cat([x, torch.randint(1, 50, (1, 5))], dim=1)  # 5 more tokens, masked out as padding
        mask = torch.tensor([[1] * 10 + [0] * 5])
        torch.testing.assert_close(model(padded, mask)[:, :10], a, atol=1e-5, rtol=0)


def test_sequence_longer_than_the_position_table_is_refused():
    model = Bert(tiny_config(block_size=8))
    with pytest.raises(ValueError, match="longer than block_size=8"):
        model(torch.ones(1, 9, dtype=torch.long))


@pytest.mark.parametrize("kwargs,error,message", [
    ({"input_ids": torch.ones(4, dtype=torch.long)}, ValueError, r"input_ids must be \(batch, time\)"),
    ({"input_ids": torch.ones(1, 4)}, TypeError, "integer tensor"),
    ({"input_ids": torch.full((1, 4), 50)}, ValueError, r"in \[0, vocab_size=50\)"),
    ({"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 3)}, ValueError,
     "attention_mask must have the shape"),
    ({"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])},
     ValueError, "no real token"),
    ({"input_ids": torch.ones(1, 4, dtype=torch.long), "token_type_ids": torch.full((1, 4), 2)}, ValueError,
     "type_vocab_size=2"),
])
def test_bad_inputs_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        Bert(tiny_config())(**kwargs)


@pytest.mark.parametrize("field,value,message", [
    ("n_head", 5, "divisible by n_head"),
    ("n_embd", 0, "n_embd=0: must be a positive int"),
    ("block_size", -1, "block_size"),
    ("dropout", 1.0, "dropout"),
    ("pad_token_id", 50, "pad_token_id"),
    ("activation", "swish", "activation"),
    ("layer_norm_eps", 0.0, "layer_norm_eps"),
])
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    expected = torch.stack([hidden[0].mean(0), hidden[1, :2].mean(0), hidden[2, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), expected)
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1))
    with pytest.raises(ValueError, match="attention_mask must be"):
        mean_pool(hidden, mask[:, :5])


def test_mask_tokens_follows_the_15_80_10_10_recipe():
    vocab, mask_id, specials = 1000, 3, (0, 1, 2, 3)
    ids = torch.randint(4, vocab, (400, 500), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1], ids[:, -50:-1] = 1, 2, 0  # [CLS] ... [SEP] and padding
    inputs, labels = mask_tokens(ids, mask_id, vocab, specials, generator=torch.Generator().manual_seed(1))
    picked = labels != IGNORE_INDEX
    eligible = ~torch.isin(ids, torch.tensor(specials))
    assert not (picked & ~eligible).any(), "special tokens and padding must never be picked"
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(inputs[~picked], ids[~picked])
    n = picked.sum().item()
    # 180,400 eligible tokens: the standard error of the picked fraction is 0.0008, of each share below 0.002
    assert abs(n / eligible.sum().item() - 0.15) < 0.005
    masked = (inputs[picked] == mask_id).float().mean().item()
    kept = (inputs[picked] == ids[picked]).float().mean().item()
    replaced = 1 - masked - kept  # by another random id
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    assert inputs[picked & (inputs != mask_id) & (inputs != ids)].unique().numel() > 500  # random ids are spread


def test_mask_tokens_arguments_are_checked():
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="mask_prob must be in"):
        mask_tokens(ids, 3, 10, mask_prob=0.0)
    with pytest.raises(ValueError, match="mask_token_id=10"):
        mask_tokens(ids, 10, 10)
    with pytest.raises(TypeError, match="integer tensor"):
        mask_tokens(ids.float(), 3, 10)


def test_mlm_loss_is_cross_entropy_over_the_picked_positions():
    torch.manual_seed(0)
    model = Bert(tiny_config(mlm_head=True)).eval()
    ids = torch.randint(4, 50, (3, 12))
    inputs, labels = mask_tokens(ids, 3, 50, (0, 1, 2, 3), mask_prob=0.3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.mlm_logits(model(inputs))  # every position, then the ignored ones are skipped
        expected = F.cross_entropy(logits.reshape(-1, 50), labels.reshape(-1), ignore_index=-100)
        torch.testing.assert_close(mlm_loss(model, inputs, labels), expected)
    assert model.mlm.decoder.weight is model.wte.weight  # the output matrix is the token embedding matrix
    with pytest.raises(ValueError, match="pick no position"):
        mlm_loss(model, inputs, torch.full_like(labels, IGNORE_INDEX))


def test_mlm_training_learns_a_fixed_pattern():
    torch.manual_seed(0)
    model = Bert(tiny_config(mlm_head=True, dropout=0.0))
    pattern = torch.arange(4, 20).repeat(8, 1)  # (8, 16): the same sentence in every row
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        inputs, labels = mask_tokens(pattern, 3, 50, (0, 1, 2, 3), generator=g)
        loss = mlm_loss(model, inputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[:5]) / 5 > 3.0 and sum(losses[-5:]) / 5 < 0.5  # from ~ln(50) to near certainty


def test_checkpoint_round_trip_by_registry_name(tmp_path):
    torch.manual_seed(0)
    model = Bert(tiny_config(mlm_head=True, pooler=True)).eval()
    save_checkpoint(model, tmp_path / "bert")
    assert '"model": "bert"' in (tmp_path / "bert" / "config.json").read_text()
    loaded = load_checkpoint(tmp_path / "bert")
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
        torch.testing.assert_close(loaded.mlm_logits(loaded(ids)), model.mlm_logits(model(ids)))
    assert loaded.mlm.decoder.weight is loaded.wte.weight
