import pytest
import torch

from minimodels.training.data import BatchSampler, CharDataset, CharTokenizer, load_corpus, train_val_split


def test_corpus_is_real_prose_and_deterministic():
    text = load_corpus()
    assert len(text) > 100_000
    assert "statement" in text
    assert load_corpus() == text
    assert load_corpus(max_chars=50) == text[:50]
    with pytest.raises(ValueError, match="max_chars"):
        load_corpus(max_chars=0)


def test_tokenizer_round_trip(tmp_path):
    text = load_corpus(max_chars=5000)
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text))
    tok.save(tmp_path / "tok.json")
    again = CharTokenizer.load(tmp_path / "tok.json")
    assert again.chars == tok.chars
    assert again.encode("the") == tok.encode("the")
    assert tok.decode(torch.tensor(tok.encode("abc"))) == "abc"


def test_tokenizer_unknown_character_is_named():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"'z'.*position 2"):
        tok.encode("abz")
    with pytest.raises(ValueError, match="cannot decode id 7"):
        tok.decode([0, 7])


def test_split_is_deterministic_and_disjoint():
    data = torch.arange(100)
    train, val = train_val_split(data, 0.2)
    assert torch.equal(train, torch.arange(80)) and torch.equal(val, torch.arange(80, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(data, 1.5)


def test_batch_sampler_shapes_targets_and_seed():
    data = torch.arange(1000)
    sampler = BatchSampler(data, batch_size=5, block_size=8, generator=torch.Generator().manual_seed(3))
    x, y = sampler()
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y, x + 1)  # next-token targets on an arange stream
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # contiguous windows
    again = BatchSampler(data, 5, 8, generator=torch.Generator().manual_seed(3))()
    assert torch.equal(again[0], x)
    with pytest.raises(ValueError, match="block_size"):
        BatchSampler(data, 5, 0)
    with pytest.raises(ValueError, match="more than block_size"):
        BatchSampler(torch.arange(8), 5, 8)


def test_dataset_batch_fn_splits():
    ds = CharDataset.from_corpus(max_chars=20_000)
    get_batch = ds.batch_fn(batch_size=4, block_size=16, seed=1)
    x, y = get_batch("val")
    assert x.shape == (4, 16) and x.dtype == torch.long
    with pytest.raises(ValueError, match="split"):
        get_batch("test")
