"""The RAG pipeline's stages: fusion and reorder by hand, retrieval on a toy corpus, the grid search."""

from __future__ import annotations

import numpy as np
import pytest

from minimodels.retrieval.fusion import long_context_reorder, reciprocal_rank_fusion
from minimodels.retrieval.pipeline import (
    BM25Retriever,
    DenseRetriever,
    ExtractiveAnswer,
    HybridRetriever,
    HyDE,
    LMGenerator,
    LongContextReorder,
    MultiQuery,
    PassPassages,
    PassQuery,
    RAGPipeline,
    Reranker,
    grid_search,
    sentences,
)

PASSAGES = [
    "A generator function uses yield to produce a sequence of values lazily.",
    "The with statement wraps a block with methods defined by a context manager.",
    "Dictionaries map hashable keys to values. Keys must be immutable.",
    "A list comprehension builds a list from an iterable in one expression.",
    "Exceptions are raised with raise and caught with try and except clauses.",
]


def bag_of_words_encoder(texts):
    """A deterministic stand-in for a sentence encoder: normalized counts over a fixed vocabulary."""
    vocab = sorted({w for p in PASSAGES for w in p.lower().replace(".", "").split()})
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for row, text in enumerate(texts):
        for w in text.lower().replace(".", "").replace("?", "").split():
            if w in vocab:
                out[row, vocab.index(w)] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    expected = {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63 + 1 / 62, "d": 1 / 63}
    assert [doc for doc, _ in fused] == ["b", "c", "a", "d"]
    for doc, score in fused:
        assert score == pytest.approx(expected[doc])
    with pytest.raises(ValueError, match="at least one ranking"):
        reciprocal_rank_fusion([])
    with pytest.raises(ValueError, match="lists an id twice"):
        reciprocal_rank_fusion([["a", "a"]])


def test_long_context_reorder_puts_ranks_one_and_two_at_the_ends():
    assert long_context_reorder([1, 2, 3, 4, 5]) == [1, 3, 5, 4, 2]
    assert long_context_reorder([1, 2, 3, 4]) == [1, 3, 4, 2]
    assert long_context_reorder([1]) == [1]
    for n in range(2, 12):
        order = long_context_reorder(list(range(1, n + 1)))
        assert {order[0], order[-1]} == {1, 2} and sorted(order) == list(range(1, n + 1))


def test_bm25_dense_and_hybrid_find_the_right_passage():
    bm25 = BM25Retriever(PASSAGES)
    dense = DenseRetriever(PASSAGES, bag_of_words_encoder)
    hybrid = HybridRetriever([bm25, dense])
    for retriever in (bm25, dense, hybrid):
        top = retriever.search("how does yield make a generator", k=2)
        assert top[0][0] == 0, retriever.name
        assert len(top) == 2
    assert dense.search("context manager with statement", k=1)[0][0] == 1


def test_dense_retriever_with_an_index_equals_exact_search():
    class ExactIndex:  # the index interface: add(vectors), search(queries, k) -> (ids, cosine distances)
        def add(self, vectors):
            self.vectors = vectors

        def search(self, queries, k):
            sims = queries @ self.vectors.T
            ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            return ids, 1 - np.take_along_axis(sims, ids, axis=1)

    exact = DenseRetriever(PASSAGES, bag_of_words_encoder)
    indexed = DenseRetriever(PASSAGES, bag_of_words_encoder, index=ExactIndex())
    for query in ("dictionary keys", "raise exceptions with try"):
        a, b = exact.search(query, 3), indexed.search(query, 3)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-6)


def test_pipeline_stages_compose():
    pipeline = RAGPipeline(BM25Retriever(PASSAGES), pre=MultiQuery(), post=LongContextReorder(),
                           generator=ExtractiveAnswer(), k=3, candidates=5)
    result = pipeline("What do dictionaries map keys to?")
    assert result.variants[0] == "What do dictionaries map keys to?" and len(result.variants) == 2
    assert len(result.ranked) == 3 and result.ranked[0][0] == 2  # the best passage first after reordering
    assert result.answer == "Dictionaries map hashable keys to values."
    assert result.stages == {"pre": "multi-query", "retrieval": "bm25", "post": "reorder", "generation": "extractive"}


def test_reranker_reorders_by_its_score_and_hyde_adds_a_passage():
    reranker = Reranker(lambda q, p: -len(p))  # prefer short passages
    ranked = reranker("q", [(0, 3.0), (1, 2.0), (2, 1.0)], PASSAGES, k=2)
    assert [i for i, _ in ranked] == [2, 0]
    hyde = HyDE(lambda q: "A generator uses yield.")
    assert hyde("what is a generator") == ["what is a generator", "what is a generator A generator uses yield."]
    assert PassQuery()("x") == ["x"] and PassPassages()("q", [(1, 1.0), (0, 0.5)], PASSAGES, k=1) == [(1, 1.0)]


def test_lm_generator_builds_the_prompt_from_the_passages():
    seen = []
    generator = LMGenerator(lambda prompt: seen.append(prompt) or " yield ")
    assert generator("What is yield?", ["passage one", "passage two"]) == "yield"
    assert seen[0] == "passage one\npassage two\nQuestion: What is yield?\nAnswer:"


def test_grid_search_ranks_every_combination():
    retrievers = {"bm25": BM25Retriever(PASSAGES), "dense": DenseRetriever(PASSAGES, bag_of_words_encoder)}
    options = {"retriever": retrievers, "post": {"pass": PassPassages(), "reorder": LongContextReorder()}}
    questions = {"how does yield make a generator": 0, "raise exceptions with try": 4}

    def hit_rate(pipeline):
        return np.mean([pipeline(q, generate=False).ranked[0][0] == gold for q, gold in questions.items()])

    results = grid_search(options, hit_rate, lambda retriever, post: RAGPipeline(retriever, post=post, k=2))
    assert len(results) == 4
    assert results[0][1] == 1.0 and all(a[1] >= b[1] for a, b in zip(results, results[1:], strict=False))


def test_bad_input():
    with pytest.raises(ValueError, match="passages is empty"):
        BM25Retriever([])
    with pytest.raises(TypeError, match="list of str"):
        BM25Retriever("one long string")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        BM25Retriever(PASSAGES).search("yield", 0)
    with pytest.raises(ValueError, match="candidates .* must be >= k"):
        RAGPipeline(BM25Retriever(PASSAGES), k=5, candidates=2)
    with pytest.raises(ValueError, match="non-empty str"):
        RAGPipeline(BM25Retriever(PASSAGES))("  ")
    assert sentences("One. Two?\nThree") == ["One.", "Two?", "Three"]
