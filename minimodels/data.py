"""Text data with no download: CPython's own documentation, a character tokenizer and a batch sampler.

`pydoc_data.topics` ships with every CPython: about 700 KB of real English prose about Python, which is
enough to train a small character-level language model on a laptop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


def load_corpus(max_chars: int | None = None) -> str:
    """The help topics of CPython (`pydoc_data.topics`), joined in a fixed (sorted) order."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip() for key in sorted(topics))
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        text = text[:max_chars]
    return text


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an id. The vocabulary is the sorted set of characters."""

    def __init__(self, chars: list[str] | str):
        chars = sorted(set(chars))
        if not chars:
            raise ValueError("CharTokenizer needs at least one character")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            char = err.args[0]
            position = text.index(char)
            raise ValueError(
                f"cannot encode character {char!r} (code point U+{ord(char):04X}) at position {position}: "
                f"it is not in the tokenizer's vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"cannot decode id {bad[0]}: ids must be in [0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"chars": self.chars}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        return cls(json.loads(Path(path).read_text())["chars"])


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
        text = load_corpus(max_chars)
        tokenizer = CharTokenizer.from_text(text)
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        train, val = train_val_split(ids, val_fraction)
        return cls(text, tokenizer, train, val)

    def batch_fn(self, batch_size: int, block_size: int, device: torch.device | str = "cpu", seed: int = 0):
        """A `get_batch(split)` function for `minimodels.train.train`: seeded samplers per split."""
        samplers = {
            split: BatchSampler(data, batch_size, block_size, device, torch.Generator().manual_seed(seed + i))
            for i, (split, data) in enumerate((("train", self.train), ("val", self.val)))
        }

        def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            if split not in samplers:
                raise ValueError(f"split must be 'train' or 'val', got {split!r}")
            return samplers[split]()

        return get_batch
