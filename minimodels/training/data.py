"""Batches for language-model training: a train/validation split and random windows of a token stream."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minimodels.text.char import CharTokenizer
from minimodels.text.corpus import load_corpus, load_documents


def _help_topics_up_to(max_chars: int | None) -> list[str]:
    """The help topics (one document each), cut so that "\n\n".join(...) == load_corpus(max_chars=max_chars)."""
    documents, used = [], 0
    for document in load_documents("help-topics"):
        room = None if max_chars is None else max_chars - used - (2 if documents else 0)
        if room is not None and room <= 0:
            break
        documents.append(document[:room])
        used += len(documents[-1]) + (2 if len(documents) > 1 else 0)
    return documents


def train_val_split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic split: the first (1 - val_fraction) of the tokens train, the rest validate."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_train = int(len(data) * (1 - val_fraction))
    return data[:n_train], data[n_train:]


@dataclass
class BatchSampler:
    """Random windows of a token stream: inputs x and next-token targets y, both (batch_size, block_size)."""

    data: torch.Tensor
    batch_size: int
    block_size: int
    device: torch.device | str = "cpu"
    generator: torch.Generator | None = None

    def __post_init__(self):
        for name in ("batch_size", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(self.data) <= self.block_size:
            raise ValueError(
                f"data has {len(self.data)} tokens, need more than block_size={self.block_size} to draw a window"
            )

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self.generator)
        offsets = torch.arange(self.block_size)
        idx = starts[:, None] + offsets[None, :]  # (B, T)
        x = self.data[idx]
        y = self.data[idx + 1]
        return x.to(self.device), y.to(self.device)


@dataclass
class CharDataset:
    """The corpus, its tokenizer and the two splits, ready to sample batches from."""

    text: str
    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor

    @classmethod
    def from_corpus(cls, max_chars: int | None = None, val_fraction: float = 0.1, seed: int = 0) -> CharDataset:
        """The course corpus split by DOCUMENT: a seeded random choice of help topics validates.

        Each help topic of `pydoc_data.topics` is one document. Cutting the joined text at 90% would make
        the validation set the alphabetically last topics, a different mix of prose than the rest; drawing
        whole documents at random keeps both splits alike and never cuts a document in two. Documents are
        drawn in a random order (seeded) into validation while they fit in val_fraction of the characters,
        so the validation share is val_fraction approximately (at most). `text` is the whole corpus as
        `load_corpus(max_chars=max_chars)` returns it; `train` and `val` are the ids of each split's documents joined
        by a blank line, in corpus order.
        """
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        text = load_corpus(max_chars=max_chars)
        documents = _help_topics_up_to(max_chars)
        if len(documents) < 2:
            raise ValueError(
                f"max_chars={max_chars} leaves {len(documents)} document; a split by document needs at least 2"
            )
        target = val_fraction * sum(len(doc) for doc in documents)
        order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
        in_val, val_chars = set(), 0
        for i in order:
            if val_chars + len(documents[i]) <= target:
                in_val.add(i)
                val_chars += len(documents[i])
        if not in_val:  # every document is larger than the target: take the smallest one
            in_val.add(min(range(len(documents)), key=lambda i: len(documents[i])))
        if len(in_val) == len(documents):
            in_val.discard(order[-1])
        tokenizer = CharTokenizer.from_text(text)

        def encode(indices) -> torch.Tensor:
            joined = "\n\n".join(documents[i] for i in sorted(indices))
            return torch.tensor(tokenizer.encode(joined), dtype=torch.long)

        train = encode(set(range(len(documents))) - in_val)
        val = encode(in_val)
        return cls(text, tokenizer, train, val)

    def batch_fn(self, batch_size: int, block_size: int, device: torch.device | str = "cpu", seed: int = 0):
        """A `get_batch(split)` function for `minimodels.training.loop.train`: seeded samplers per split."""
        samplers = {
            split: BatchSampler(data, batch_size, block_size, device, torch.Generator().manual_seed(seed + i))
            for i, (split, data) in enumerate((("train", self.train), ("val", self.val)))
        }

        def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            if split not in samplers:
                raise ValueError(f"split must be 'train' or 'val', got {split!r}")
            return samplers[split]()

        return get_batch
