"""Text: the course corpora (all shipped with Python and the pinned packages) and the byte-level BPE tokenizer."""

from minimodels.text.bpe import BPETokenizer, pretokenize
from minimodels.text.corpus import CORPORA, load_corpus, load_documents, load_records

__all__ = ["BPETokenizer", "CORPORA", "load_corpus", "load_documents", "load_records", "pretokenize"]
