"""A character-level tokenizer: one id per character of a fixed, sorted vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import torch


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
