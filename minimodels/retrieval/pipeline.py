"""A retrieval-augmented generation pipeline of interchangeable stages, each with a "pass" option.

    pipeline = RAGPipeline(retriever=BM25Retriever(passages), generator=ExtractiveAnswer(), k=5)
    result = pipeline("How does a generator function return values?")

Stages, in order (Gao et al. 2023, "Retrieval-Augmented Generation for Large Language Models: A Survey",
arXiv:2312.10997, names them pre-retrieval, retrieval, post-retrieval and generation):
- pre-retrieval: `PassQuery` (the query as it is), `MultiQuery` (the query plus rewrites: its keywords, and
  optional generated variants), `HyDE` (Gao et al. 2022, arXiv:2212.10496: the query plus a hypothetical
  answer written by a language model, so that the search matches answers rather than questions);
- retrieval: `BM25Retriever`, `DenseRetriever` (a sentence encoder and a vector index), `HybridRetriever`
  (reciprocal-rank fusion of several); several query variants are fused the same way;
- post-retrieval: `PassPassages`, `Reranker` (re-score the candidates with a better, slower scorer),
  `LongContextReorder` (best passages at both ends of the context);
- generation: `ExtractiveAnswer` (the passage sentence that overlaps the query most: a baseline that cannot
  hallucinate) or `LMGenerator` (a causal LM conditioned on the passages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from minimodels.retrieval.bm25 import BM25
from minimodels.retrieval.fusion import long_context_reorder, reciprocal_rank_fusion
from minimodels.retrieval.tokenizer import simple_tokenize

Ranked = list[tuple[int, float]]  # (passage index, score), best first


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return k


def _check_passages(passages: Sequence[str]) -> list[str]:
    if isinstance(passages, str) or not isinstance(passages, Sequence):
        raise TypeError(f"passages must be a list of str, got {type(passages).__name__}")
    if not passages:
        raise ValueError("passages is empty: a retriever needs at least one passage")
    bad = [i for i, p in enumerate(passages) if not isinstance(p, str)]
    if bad:
        raise TypeError(f"passages must be str; items {bad[:5]} are not")
    return list(passages)


# ------------------------------------------------------------------------------------ pre-retrieval

class PassQuery:
    """The query unchanged."""

    name = "pass"

    def __call__(self, query: str) -> list[str]:
        return [query]


class MultiQuery:
    """The query, its keywords without stop words, and any variants `rewrite(query) -> list[str]` returns."""

    name = "multi-query"

    def __init__(self, rewrite: Callable[[str], list[str]] | None = None):
        self.rewrite = rewrite

    def __call__(self, query: str) -> list[str]:
        variants = [query, " ".join(simple_tokenize(query, stopwords="english"))]
        if self.rewrite is not None:
            variants += list(self.rewrite(query))
        return list(dict.fromkeys(v for v in variants if v.strip()))  # unique, in order


class HyDE:
    """The query plus a hypothetical answer `write(query) -> str` (e.g. the base model's continuation)."""

    name = "hyde"

    def __init__(self, write: Callable[[str], str]):
        self.write = write

    def __call__(self, query: str) -> list[str]:
        return [query, query + " " + self.write(query)]


# ------------------------------------------------------------------------------------ retrieval

class BM25Retriever:
    """Lexical search: BM25 over simple_tokenize'd passages."""

    name = "bm25"

    def __init__(self, passages: Sequence[str], stopwords: str | None = "english", **bm25_options):
        self.passages = _check_passages(passages)
        self.stopwords = stopwords
        self.index = BM25([simple_tokenize(p, stopwords) for p in self.passages], **bm25_options)

    def search(self, query: str, k: int) -> Ranked:
        ids, scores = self.index.top_k(simple_tokenize(query, self.stopwords), _check_k(k))
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]


class DenseRetriever:
    """Semantic search: `encode(list[str]) -> (N, dim)` normalized embeddings and a vector index.

    `index` needs `add(vectors)` and `search(queries, k) -> (ids, distances)` (HNSW, or exact search when
    None). Scores are cosine similarities (1 - cosine distance).
    """

    name = "dense"

    def __init__(self, passages: Sequence[str], encode: Callable[[list[str]], object], index=None):
        self.passages = _check_passages(passages)
        self.encode = encode
        self.vectors = self._as_numpy(encode(self.passages))
        self.index = index
        if index is not None:
            index.add(self.vectors)

    @staticmethod
    def _as_numpy(vectors) -> np.ndarray:
        array = vectors.detach().cpu().numpy() if hasattr(vectors, "detach") else np.asarray(vectors)
        return array.astype(np.float32)

    def search(self, query: str, k: int) -> Ranked:
        k = min(_check_k(k), len(self.passages))
        q = self._as_numpy(self.encode([query]))  # (1, dim)
        if self.index is None:
            sims = (self.vectors @ q[0])  # (N,) cosine for normalized vectors
            top = np.argsort(-sims, kind="stable")[:k]
            return [(int(i), float(sims[i])) for i in top]
        ids, distances = self.index.search(q, k)
        return [(int(i), 1.0 - float(d)) for i, d in zip(ids[0], distances[0], strict=True)]


class HybridRetriever:
    """Reciprocal-rank fusion of several retrievers' top `depth` lists."""

    name = "hybrid"

    def __init__(self, retrievers: Sequence, depth: int = 50, rrf_k: int = 60):
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers, self.depth, self.rrf_k = list(retrievers), _check_k(depth), rrf_k
        self.passages = self.retrievers[0].passages

    def search(self, query: str, k: int) -> Ranked:
        rankings = [[i for i, _ in r.search(query, self.depth)] for r in self.retrievers]
        return reciprocal_rank_fusion(rankings, self.rrf_k)[: _check_k(k)]


def search_variants(retriever, queries: list[str], k: int, depth: int = 50) -> Ranked:
    """One query: the retriever's ranking; several variants: their rankings fused by RRF."""
    if len(queries) == 1:
        return retriever.search(queries[0], k)
    rankings = [[i for i, _ in retriever.search(q, max(k, depth))] for q in queries]
    return reciprocal_rank_fusion(rankings)[:k]


# ------------------------------------------------------------------------------------ post-retrieval

class PassPassages:
    """The k best candidates in the retriever's order."""

    name = "pass"

    def __call__(self, query: str, ranked: Ranked, passages: Sequence[str], k: int) -> Ranked:
        return ranked[:k]


class Reranker:
    """Re-score the candidates with `score(query, passage) -> float` (higher is better) and sort."""

    name = "rerank"

    def __init__(self, score: Callable[[str, str], float]):
        self.score = score

    def __call__(self, query: str, ranked: Ranked, passages: Sequence[str], k: int) -> Ranked:
        rescored = [(i, float(self.score(query, passages[i]))) for i, _ in ranked]
        return sorted(rescored, key=lambda item: -item[1])[:k]


class LongContextReorder:
    """The k best candidates, reordered: the best at both ends of the context, the weakest in the middle."""

    name = "reorder"

    def __call__(self, query: str, ranked: Ranked, passages: Sequence[str], k: int) -> Ranked:
        return long_context_reorder(ranked[:k])


# ------------------------------------------------------------------------------------ generation

def sentences(text: str) -> list[str]:
    """Split on sentence ends (., ?, !, newline), keeping non-empty pieces."""
    import re

    return [s.strip() for s in re.split(r"(?<=[.?!])\s+|\n+", text) if s.strip()]


class ExtractiveAnswer:
    """The sentence of the given passages that shares the most keywords with the query (first on ties)."""

    name = "extractive"

    def __call__(self, query: str, context: list[str]) -> str:
        keywords = set(simple_tokenize(query, stopwords="english"))
        best, best_overlap = "", -1
        for passage in context:
            for sentence in sentences(passage):
                overlap = len(keywords & set(simple_tokenize(sentence, stopwords="english")))
                if overlap > best_overlap:
                    best, best_overlap = sentence, overlap
        return best


class LMGenerator:
    """A causal LM continues "passages + question + 'Answer:'" greedily; `complete(prompt) -> str`."""

    name = "lm"

    def __init__(self, complete: Callable[[str], str], max_context_chars: int = 1200):
        self.complete, self.max_context_chars = complete, max_context_chars

    def prompt(self, query: str, context: list[str]) -> str:
        text = "\n".join(context)[-self.max_context_chars:]
        return f"{text}\nQuestion: {query}\nAnswer:"

    def __call__(self, query: str, context: list[str]) -> str:
        return self.complete(self.prompt(query, context)).strip()


# ------------------------------------------------------------------------------------ the pipeline

@dataclass
class RAGResult:
    query: str
    variants: list[str]
    ranked: Ranked  # after post-retrieval
    context: list[str]
    answer: str | None = None
    stages: dict[str, str] = field(default_factory=dict)


@dataclass
class RAGPipeline:
    """pre-retrieval -> retrieval (`candidates`, fused over variants) -> post-retrieval (k) -> generation."""

    retriever: object
    pre: Callable[[str], list[str]] = field(default_factory=PassQuery)
    post: Callable = field(default_factory=PassPassages)
    generator: Callable[[str, list[str]], str] | None = None
    k: int = 5
    candidates: int = 20  # retrieved before post-retrieval cuts to k

    def __post_init__(self):
        _check_k(self.k)
        _check_k(self.candidates)
        if self.candidates < self.k:
            raise ValueError(f"candidates ({self.candidates}) must be >= k ({self.k})")

    def retrieve(self, query: str) -> tuple[list[str], Ranked]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty str, got {query!r}")
        variants = self.pre(query)
        ranked = search_variants(self.retriever, variants, self.candidates)
        return variants, self.post(query, ranked, self.retriever.passages, self.k)

    def __call__(self, query: str, generate: bool = True) -> RAGResult:
        variants, ranked = self.retrieve(query)
        context = [self.retriever.passages[i] for i, _ in ranked]
        answer = self.generator(query, context) if (generate and self.generator is not None) else None
        stages = {"pre": getattr(self.pre, "name", "custom"), "retrieval": getattr(self.retriever, "name", "custom"),
                  "post": getattr(self.post, "name", "custom"),
                  "generation": getattr(self.generator, "name", "none") if self.generator else "none"}
        return RAGResult(query, variants, ranked, context, answer, stages)


def grid_search(options: dict[str, dict[str, object]], evaluate_pipeline: Callable[[RAGPipeline], float],
                build: Callable[..., RAGPipeline]) -> list[tuple[dict[str, str], float]]:
    """Score every combination of stage options (AutoRAG-style); best first.

    options: stage -> {option name -> stage object}; build(**chosen objects) -> a pipeline;
    evaluate_pipeline(pipeline) -> a score where higher is better.
    """
    import itertools

    if not options or any(not choices for choices in options.values()):
        raise ValueError("grid_search needs at least one option for every stage")
    stages = list(options)
    results = []
    for names in itertools.product(*(options[s] for s in stages)):
        chosen = dict(zip(stages, names, strict=True))
        pipeline = build(**{s: options[s][n] for s, n in chosen.items()})
        results.append((chosen, float(evaluate_pipeline(pipeline))))
    return sorted(results, key=lambda item: -item[1])
