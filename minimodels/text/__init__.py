"""Text: the course corpus and the tokenizers (characters, byte-level BPE)."""

from minimodels.text.char import CharTokenizer
from minimodels.text.corpus import load_corpus

__all__ = ["CharTokenizer", "load_corpus"]
