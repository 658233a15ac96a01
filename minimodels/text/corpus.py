"""The course corpus: text that ships with Python, so nothing is downloaded.

`pydoc_data.topics` ships with every CPython: about 700 KB of real English prose about Python, which is
enough to train a small character-level language model on a laptop.
"""

from __future__ import annotations


def load_corpus(max_chars: int | None = None) -> str:
    """The help topics of CPython (`pydoc_data.topics`), joined in a fixed (sorted) order."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip() for key in sorted(topics))
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        text = text[:max_chars]
    return text
