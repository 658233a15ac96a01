"""Retrieval: lexical search (BM25), vector search (exact kNN, NSW, HNSW), ranking metrics and a RAG pipeline.

    from minimodels.retrieval import BM25, HNSW, simple_tokenize, evaluate, RAGPipeline
"""

from minimodels.retrieval.bm25 import BM25
from minimodels.retrieval.fusion import long_context_reorder, reciprocal_rank_fusion
from minimodels.retrieval.hnsw import HNSW, HNSWConfig
from minimodels.retrieval.ir_metrics import evaluate
from minimodels.retrieval.knn import exact_knn
from minimodels.retrieval.nsw import NSW
from minimodels.retrieval.pipeline import RAGPipeline, RAGResult, grid_search
from minimodels.retrieval.tokenizer import ENGLISH_STOP_WORDS, simple_tokenize

__all__ = [
    "BM25", "ENGLISH_STOP_WORDS", "HNSW", "HNSWConfig", "NSW", "RAGPipeline", "RAGResult", "evaluate", "exact_knn",
    "grid_search", "long_context_reorder", "reciprocal_rank_fusion", "simple_tokenize",
]
