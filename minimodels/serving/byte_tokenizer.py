"""The simplest tokenizer that covers every text: its UTF-8 bytes, one id (0..255) per byte.

For serving a model without a trained tokenizer (a random model in a demo or a test). A streamed text
can end inside a multi-byte character; decode shows that as U+FFFD, which the engine holds back until
the character is complete.
"""

from __future__ import annotations


class ByteTokenizer:
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"ByteTokenizer.encode takes a str, got {type(text).__name__}")
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        bad = [i for i in ids if not 0 <= int(i) < 256]
        if bad:
            raise ValueError(f"cannot decode id {bad[0]}: byte ids must be in [0, 256)")
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
