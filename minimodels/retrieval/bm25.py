"""BM25 lexical retrieval over a sparse term-document matrix: the posting lists as rows of a CSR matrix.

    index = BM25([simple_tokenize(doc) for doc in documents])
    indices, scores = index.top_k(simple_tokenize("how do generators work"), k=5)

For a query q and a document d of length |d| (average length avgdl over the corpus),

    score(q, d) = sum over query tokens t of  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

where tf(t, d) counts t in d and a token repeated in the query counts once per occurrence (Robertson & Zaragoza,
2009, "The Probabilistic Relevance Framework: BM25 and Beyond", Foundations and Trends in IR 3(4)).
Everything right of idf depends only on (t, d), so it is computed once at indexing for every non-zero tf and
stored in a (vocabulary, documents) CSR matrix W: row t is the posting list of t. Scoring a query then reads
only the rows of its terms and adds them into one accumulator (term-at-a-time scoring: scores = counts @ W[terms])
instead of looping over every document.

Two idf variants (Kamphuis et al., 2020, "Which BM25 do you mean? A large-scale reproducibility study of
scoring variants", ECIR 2020):
- variant="okapi" (default): idf = ln((N - n + 0.5) / (n + 0.5)) with n the number of documents holding t. It
  is negative for terms in more than half the documents; like `rank_bm25.BM25Okapi`, those idfs are replaced
  by epsilon times the mean idf of the vocabulary (taken before the replacement). Scores equal rank_bm25's,
  except that with b = 1 rank_bm25 scores an empty document NaN (0 / 0 for a term it does not hold); here 0.
- variant="lucene": idf = ln(1 + (N - n + 0.5) / (n + 0.5)), always positive, and the tf part without the
  constant factor (k1 + 1), as Lucene's BM25Similarity since Lucene 8 (the factor changes no ranking).
  epsilon is not used. Lucene itself stores document lengths lossily in one byte; here they are exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import chain
from numbers import Real

import numpy as np
import scipy.sparse as sp

VARIANTS = ("okapi", "lucene")


def _check_real(name: str, value, low: float, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not low <= value <= high:  # also catches NaN
        bounds = f">= {low}" if high == float("inf") else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return float(value)


def _check_tokens(name: str, tokens) -> None:
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of tokens, got a str; tokenize it first, e.g. simple_tokenize(text)")
    if not isinstance(tokens, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of str tokens, got {type(tokens).__name__}")


class BM25:
    """BM25 index of a tokenized corpus; `get_scores` and `top_k` score one tokenized query against every document.

    Attributes: `vocabulary` (token -> row), `doc_freq` (V,), `idf` (V,), `doc_len` (N,), `avgdl`,
    `term_frequencies` (V, N) CSR of counts, and `average_idf` (the mean idf before the epsilon floor).
    """

    def __init__(self, corpus_tokens: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25, variant: str = "okapi"):
        if isinstance(corpus_tokens, str) or not isinstance(corpus_tokens, Sequence):
            raise TypeError(f"corpus_tokens must be a list of token lists, got {type(corpus_tokens).__name__}")
        if len(corpus_tokens) == 0:
            raise ValueError("corpus_tokens is empty: BM25 needs at least one document")
        for i, doc in enumerate(corpus_tokens):
            _check_tokens(f"corpus_tokens[{i}]", doc)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.k1 = _check_real("k1", k1, 0.0)
        self.b = _check_real("b", b, 0.0, 1.0)
        self.epsilon = _check_real("epsilon", epsilon, 0.0)
        self.variant = variant

        n_docs = len(corpus_tokens)
        self.doc_len = np.fromiter(map(len, corpus_tokens), dtype=np.int64, count=n_docs)  # (N,)
        n_tokens = int(self.doc_len.sum())
        if n_tokens == 0:
            raise ValueError(f"corpus_tokens has {n_docs} documents but no tokens: every document is empty")
        self.avgdl = n_tokens / n_docs

        # Token -> row id in order of first appearance, in one C-level pass: a missing key gets the next id.
        vocabulary: defaultdict[str, int] = defaultdict()
        vocabulary.default_factory = vocabulary.__len__
        try:
            term_ids = np.fromiter(map(vocabulary.__getitem__, chain.from_iterable(corpus_tokens)),
                                   dtype=np.int64, count=n_tokens)  # (T,)
        except TypeError as err:  # an unhashable token
            raise TypeError(f"corpus_tokens must hold str tokens: {err}") from None
        vocabulary.default_factory = None
        if set(map(type, vocabulary)) != {str}:  # C-level pass; look closer only if some token is not a plain str
            not_str = next((t for t in vocabulary if not isinstance(t, str)), None)
            if not_str is not None:
                raise TypeError(f"corpus_tokens must hold str tokens, got {not_str!r} ({type(not_str).__name__})")
        self.vocabulary: dict[str, int] = dict(vocabulary)

        # (V, N) counts: one entry per token occurrence, duplicates summed by the COO -> CSR conversion.
        doc_ids = np.repeat(np.arange(n_docs), self.doc_len)  # (T,)
        shape = (len(self.vocabulary), n_docs)
        tf = sp.coo_matrix((np.ones(n_tokens), (term_ids, doc_ids)), shape=shape).tocsr()
        tf.sum_duplicates()
        self.term_frequencies = tf
        self.doc_freq = np.diff(tf.indptr)  # (V,) documents holding each term
        self.idf = self._idf(self.doc_freq, n_docs)  # (V,)

        # Every non-zero (t, d): idf(t) * saturated, length-normalised tf(t, d). Same operation order as rank_bm25.
        length_norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)  # (N,)
        rows = np.repeat(np.arange(shape[0]), self.doc_freq)  # (nnz,)
        counts, cols = tf.data, tf.indices
        if variant == "okapi":
            saturated = counts * (self.k1 + 1) / (counts + length_norm[cols])
        else:
            saturated = counts / (counts + length_norm[cols])
        self._weights = sp.csr_matrix((self.idf[rows] * saturated, cols, tf.indptr), shape=shape)  # (V, N)

    def _idf(self, doc_freq: np.ndarray, n_docs: int) -> np.ndarray:
        if self.variant == "lucene":
            self.average_idf = None
            return np.log(1 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))
        idf = np.log(n_docs - doc_freq + 0.5) - np.log(doc_freq + 0.5)
        self.average_idf = float(idf.mean())
        return np.where(idf < 0, self.epsilon * self.average_idf, idf)

    def __len__(self) -> int:
        return len(self.doc_len)

    def _query_counts(self, query_tokens: Sequence[str], name: str = "query_tokens") -> tuple[np.ndarray, np.ndarray]:
        """Row ids of the known query terms (first-appearance order) and how often each occurs in the query."""
        _check_tokens(name, query_tokens)
        counts: dict[int, int] = {}
        for token in query_tokens:
            if not isinstance(token, str):
                raise TypeError(f"{name} must hold str tokens, got {token!r} ({type(token).__name__})")
            row = self.vocabulary.get(token)
            if row is not None:  # a term absent from the corpus adds nothing, as in rank_bm25
                counts[row] = counts.get(row, 0) + 1
        return np.fromiter(counts.keys(), np.int64, len(counts)), np.fromiter(counts.values(), np.float64, len(counts))

    def get_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for one tokenized query, shape (N,) float64."""
        rows, counts = self._query_counts(query_tokens)
        weights = self._weights
        scores = np.zeros(len(self))  # (N,)
        for row, count in zip(rows, counts, strict=True):  # term at a time: add each term's posting list
            start, end = weights.indptr[row], weights.indptr[row + 1]
            scores[weights.indices[start:end]] += count * weights.data[start:end]  # a row's doc ids are unique
        return scores

    def score_queries(self, queries: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores of many tokenized queries at once, shape (Q, N): one sparse (Q, V) @ (V, N) product."""
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise TypeError(f"queries must be a list of token lists, got {type(queries).__name__}")
        row_ids, col_ids, values = [], [], []
        for i, query in enumerate(queries):
            rows, counts = self._query_counts(query, f"queries[{i}]")
            row_ids.append(np.full(len(rows), i))
            col_ids.append(rows)
            values.append(counts)
        if not queries:
            return np.zeros((0, len(self)))
        query_matrix = sp.csr_matrix((np.concatenate(values), (np.concatenate(row_ids), np.concatenate(col_ids))),
                                     shape=(len(queries), len(self.vocabulary)))  # (Q, V)
        return (query_matrix @ self._weights).toarray()  # (Q, N)

    def top_k(self, query_tokens: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The min(k, N) best documents: (indices, scores), by descending score, ties by ascending index."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = self.get_scores(query_tokens)
        n = len(scores)
        if k >= n:
            order = np.argsort(-scores, kind="stable")
        else:
            kth_best = np.partition(scores, n - k)[n - k]
            candidates = np.flatnonzero(scores >= kth_best)  # ascending index; all ties at the cut included
            order = candidates[np.argsort(-scores[candidates], kind="stable")][:k]
        return order, scores[order]
