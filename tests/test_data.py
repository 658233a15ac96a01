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


def _split_documents(ds: CharDataset, documents: list[str]) -> tuple[list[int], list[int]]:
    """Indices of the documents whose text makes up ds.val and ds.train, found by greedy matching in order."""
    found = {}
    for split in ("train", "val"):
        text, indices, pos = ds.tokenizer.decode(getattr(ds, split)), [], 0
        for i, doc in enumerate(documents):
            if text.startswith(doc, pos) and (pos + len(doc) == len(text) or text.startswith("\n\n", pos + len(doc))):
                indices.append(i)
                pos += len(doc) + 2
        assert pos - 2 == len(text), f"{split} is not a concatenation of whole documents"
        found[split] = indices
    return found["train"], found["val"]


def test_corpus_split_by_random_documents_is_deterministic_disjoint_and_sized():
    from pydoc_data.topics import topics

    documents = [topics[key].strip() for key in sorted(topics)]  # independent of the module's helper
    ds = CharDataset.from_corpus()
    assert ds.text == "\n\n".join(documents)
    train_docs, val_docs = _split_documents(ds, documents)
    assert set(train_docs).isdisjoint(val_docs) and sorted(train_docs + val_docs) == list(range(len(documents)))
    val_chars = sum(len(documents[i]) for i in val_docs)
    assert 0.08 <= val_chars / len(ds.text) <= 0.10
    assert val_docs != list(range(len(documents) - len(val_docs), len(documents)))  # not the last topics
    assert max(val_docs) - min(val_docs) > len(documents) // 2  # drawn from all over the alphabet
    again = CharDataset.from_corpus()
    assert torch.equal(again.train, ds.train) and torch.equal(again.val, ds.val)
    other = CharDataset.from_corpus(seed=1)
    assert _split_documents(other, documents)[1] != val_docs
    third = CharDataset.from_corpus(val_fraction=0.3, seed=2)
    assert 0.27 <= len(third.val) / (len(third.train) + len(third.val) - 2) <= 0.3 + 1e-9


def test_corpus_split_arguments_are_checked():
    small = CharDataset.from_corpus(max_chars=20_000)
    assert small.text == load_corpus(max_chars=20_000)
    assert len(small.val) > 0 and len(small.train) > len(small.val)
    with pytest.raises(ValueError, match="val_fraction"):
        CharDataset.from_corpus(val_fraction=0.0)
    with pytest.raises(ValueError, match="seed"):
        CharDataset.from_corpus(seed=-1)
    with pytest.raises(ValueError, match="at least 2"):
        CharDataset.from_corpus(max_chars=50)
