"""Retrieval: lexical search (BM25 over a sparse term-document matrix), its tokenizer, and ranking metrics."""

from .bm25 import BM25
from .ir_metrics import evaluate
from .tokenizer import ENGLISH_STOP_WORDS, simple_tokenize

__all__ = ["BM25", "ENGLISH_STOP_WORDS", "evaluate", "simple_tokenize"]
