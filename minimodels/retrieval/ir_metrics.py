"""Ranking metrics with binary relevance, defined as sentence-transformers' InformationRetrievalEvaluator does.

    evaluate({"q1": ["d3", "d1", "d7"]}, {"q1": {"d1"}}, k_values=(1, 3))
    # {'accuracy@1': 0.0, 'accuracy@3': 1.0, 'precision@1': 0.0, ..., 'map@3': 0.5}

For one query with ranking r_1, r_2, ... and relevant set R, rel_i = 1 if r_i is in R, hits@k = sum_{i<=k} rel_i:
- accuracy@k: 1 if hits@k > 0          - precision@k: hits@k / k (k, even when fewer were retrieved)
- recall@k: hits@k / |R|               - mrr@k: 1 / (rank of the first relevant document), 0 if none in the top k
- ndcg@k: DCG@k / ideal DCG@k with DCG = sum_i rel_i / log2(i + 1) and the ideal ranking putting min(|R|, k)
  relevant documents first (Järvelin & Kekäläinen, 2002, "Cumulated gain-based evaluation of IR techniques",
  ACM TOIS 20(4))
- map@k: sum over relevant r_i in the top k of hits@i / i, divided by min(k, |R|)
Each is averaged over the queries that have at least one relevant document (as the evaluator does, and as
BEIR reports them: Thakur et al., 2021, arXiv:2104.08663); queries with an empty relevant set are skipped.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

METRICS = ("accuracy", "precision", "recall", "mrr", "ndcg", "map")


def _check_k_values(k_values: Iterable[int]) -> list[int]:
    if isinstance(k_values, (int, str)) or not isinstance(k_values, Iterable):
        raise TypeError(f"k_values must be a sequence of ints, got {type(k_values).__name__}")
    ks = list(k_values)
    if not ks:
        raise ValueError("k_values is empty: give at least one cutoff k >= 1")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k_values must hold ints, got {k!r} ({type(k).__name__})")
        if k < 1:
            raise ValueError(f"k_values must all be >= 1, got {k}")
    return sorted(set(int(k) for k in ks))


def _check_queries(ranked: Mapping, relevant: Mapping) -> list[Hashable]:
    """The query ids to average over: those with a non-empty relevant set, each of which must have a ranking."""
    for name, value in (("ranked", ranked), ("relevant", relevant)):
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict keyed by query id, got {type(value).__name__}")
    unknown = [qid for qid in ranked if qid not in relevant]
    if unknown:
        raise ValueError(f"ranked has query ids missing from relevant: {unknown[:5]} ({len(unknown)} in all)")
    queries = [qid for qid, docs in relevant.items() if len(docs) > 0]
    if not queries:
        raise ValueError("relevant has no query with a relevant document: there is nothing to evaluate")
    missing = [qid for qid in queries if qid not in ranked]
    if missing:
        raise ValueError(f"ranked has no ranking for query ids {missing[:5]} ({len(missing)} in all); "
                         "give an empty list for a query that retrieved nothing")
    return queries


def _relevance(qid: Hashable, ranking: Sequence[Hashable], relevant_docs: set, max_k: int) -> np.ndarray:
    """rel_i for the first max_k positions, zero-padded: shape (max_k,)."""
    if isinstance(ranking, str) or not isinstance(ranking, Sequence):
        raise TypeError(f"ranked[{qid!r}] must be a list of document ids, got {type(ranking).__name__}")
    if len(set(ranking)) != len(ranking):
        seen: set = set()
        repeated = next(doc for doc in ranking if doc in seen or seen.add(doc))
        raise ValueError(f"ranked[{qid!r}] lists document {repeated!r} more than once")
    rel = np.zeros(max_k)
    rel[: min(len(ranking), max_k)] = [doc in relevant_docs for doc in ranking[:max_k]]
    return rel


def evaluate(ranked: Mapping[Hashable, Sequence[Hashable]], relevant: Mapping[Hashable, Iterable[Hashable]],
             k_values: Iterable[int] = (1, 3, 5, 10)) -> dict[str, float]:
    """Mean `accuracy@k`, `precision@k`, `recall@k`, `mrr@k`, `ndcg@k`, `map@k` of best-first rankings.

    ranked: query id -> document ids, best first. relevant: query id -> the relevant document ids.
    """
    ks = _check_k_values(k_values)
    queries = _check_queries(ranked, relevant)
    max_k = ks[-1]
    positions = np.arange(1, max_k + 1)  # (max_k,) ranks 1..max_k
    discounts = 1.0 / np.log2(positions + 1)  # (max_k,)
    per_query = {f"{m}@{k}": [] for m in METRICS for k in ks}
    for qid in queries:
        relevant_docs = set(relevant[qid])
        n_relevant = len(relevant_docs)
        rel = _relevance(qid, ranked[qid], relevant_docs, max_k)  # (max_k,)
        hits = np.cumsum(rel)  # (max_k,) hits@i
        first_hit = int(np.argmax(rel)) + 1 if rel.any() else None
        for k in ks:
            per_query[f"accuracy@{k}"].append(float(hits[k - 1] > 0))
            per_query[f"precision@{k}"].append(hits[k - 1] / k)
            per_query[f"recall@{k}"].append(hits[k - 1] / n_relevant)
            per_query[f"mrr@{k}"].append(1.0 / first_hit if first_hit is not None and first_hit <= k else 0.0)
            ideal = discounts[: min(n_relevant, k)].sum()
            per_query[f"ndcg@{k}"].append((rel[:k] * discounts[:k]).sum() / ideal)
            per_query[f"map@{k}"].append((rel[:k] * hits[:k] / positions[:k]).sum() / min(k, n_relevant))
    return {name: float(np.mean(values)) for name, values in per_query.items()}
