"""Batches for language-model training: a train/validation split and random windows of a token stream."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minimodels.text.char import CharTokenizer
from minimodels.text.corpus import load_corpus


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
    def from_corpus(cls, max_chars: int | None = None, val_fraction: float = 0.1) -> CharDataset:
        text = load_corpus(max_chars=max_chars)
        tokenizer = CharTokenizer.from_text(text)
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        train, val = train_val_split(ids, val_fraction)
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
