"""Retrieval: lexical search (BM25 over a sparse term-document matrix), its tokenizer, and ranking metrics."""

from .bm25 import BM25
from .fusion import long_context_reorder, reciprocal_rank_fusion
from .ir_metrics import evaluate
from .pipeline import RAGPipeline, RAGResult, grid_search
from .tokenizer import ENGLISH_STOP_WORDS, simple_tokenize

__all__ = ["BM25", "ENGLISH_STOP_WORDS", "RAGPipeline", "RAGResult", "evaluate", "grid_search", "long_context_reorder",
           "reciprocal_rank_fusion", "simple_tokenize"]
