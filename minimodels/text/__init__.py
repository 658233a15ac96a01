"""Text: the course corpora (shipped with Python and the pinned packages), character and byte-level BPE tokenizers."""

from minimodels.text.bpe import BPETokenizer, pretokenize
from minimodels.text.char import CharTokenizer
from minimodels.text.corpus import CORPORA, load_corpus, load_documents, load_records

__all__ = ["BPETokenizer", "CORPORA", "CharTokenizer", "load_corpus", "load_documents", "load_records", "pretokenize"]
