"""The committed course base model: it loads, its recorded held-out loss is recomputed, HF reads its tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from minimodels import Llama
from minimodels.pretrained import checkpoint_path, load, training_log
from minimodels.text.corpus import load_documents

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(1)
    return load("course-llama")


def val_slice(tokenizer, windows: int, block: int) -> torch.Tensor:
    """The first windows * block + 1 ids of the English val documents, each followed by <|endoftext|>."""
    eot = tokenizer.encode(EOT)
    assert len(eot) == 1
    ids: list[int] = []
    for doc in load_documents("english", "val"):
        ids += tokenizer.encode(doc) + eot
        if len(ids) > windows * block:
            break
    return torch.tensor(ids[:windows * block + 1])


def test_loads_a_float32_llama_in_eval_mode(loaded):
    model, tokenizer = loaded
    assert isinstance(model, Llama) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.vocab_size == tokenizer.vocab_size == 4096
    folder = checkpoint_path("course-llama")
    total = sum(f.stat().st_size for f in folder.iterdir())
    assert total < 15_000_000


def test_recorded_validation_loss_is_recomputed(loaded):
    model, tokenizer = loaded
    recorded = training_log()["val_slice"]
    windows, block = recorded["windows"], recorded["block_size"]
    ids = val_slice(tokenizer, windows, block)
    x = ids[:-1].view(windows, block)  # (W, T)
    y = ids[1:].view(windows, block)
    with torch.no_grad():
        logits = model(x)  # (W, T, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item()
    assert loss == pytest.approx(recorded["loss"], rel=1e-3)
    assert loss < math.log(4096) - 2.5  # far below a uniform guess over the vocabulary (8.3 nats)


def test_log_figures_are_consistent():
    log = training_log()
    assert log["val_perplexity"] == pytest.approx(math.exp(log["val_loss"]), rel=1e-9)
    bits = log["val_loss"] * log["val_tokens"] / math.log(2) / log["val_bytes"]
    assert log["val_bits_per_byte"] == pytest.approx(bits, rel=1e-9)
    assert len(log["train_loss"]) == log["train_config"]["max_iters"]
    assert log["tokens_seen"] == log["train_config"]["max_iters"] * log["batch_size"] * log["block_size"]
    assert sum(log["train_loss"][-20:]) / 20 < sum(log["train_loss"][:5]) / 5 - 2


def test_hf_tokenizers_reads_the_committed_tokenizer(loaded):
    _, tokenizer = loaded
    hf = Tokenizer.from_file(str(checkpoint_path("course-llama") / "tokenizer.json"))
    text = "".join(load_documents("english", "val")[:3]) + EOT + " def f(x):\n    return x  # ünïcode 🙂"
    assert hf.encode(text).ids == tokenizer.encode(text)


def test_missing_checkpoint_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMODELS_CHECKPOINTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no checkpoint 'course-llama' at {tmp_path}"):
        load("course-llama")
    with pytest.raises(ValueError, match=r"name must be one of \('course-llama',\), got 'gpt-5'"):
        load("gpt-5")
