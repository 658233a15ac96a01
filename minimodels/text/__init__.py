"""Text: the course corpora (all shipped with Python and the pinned packages) and the tokenizers (characters, byte-level BPE)."""

from minimodels.text.bpe import BPETokenizer, pretokenize
from minimodels.text.char import CharTokenizer
from minimodels.text.corpus import CORPORA, load_corpus, load_documents, load_records

__all__ = ["BPETokenizer", "CORPORA", "CharTokenizer", "load_corpus", "load_documents", "load_records", "pretokenize"]
