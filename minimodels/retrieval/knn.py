"""Exact k-nearest-neighbour search: compare the query with every stored vector and keep the k closest.

It is the ground truth that approximate indexes are measured against, and its cost, O(N * D) per query,
is the reason they exist. Distances follow `distances` (l2 squared, ip = 1 - <a, b>, cosine = 1 - cos).
"""

from __future__ import annotations

import numpy as np

from minimodels.retrieval.distances import as_vectors, check_metric, prepare


def exact_knn(data, queries, k: int, metric: str = "l2", chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `data` (N, D) to each row of `queries` (Q, D), by brute force.

    Returns (ids (Q, k) int64, distances (Q, k) float32), closest first; ties are broken by the smaller id.
    Distances are computed in float64 (so the ranking is exact up to float64 rounding) and returned as float32.
    """
    check_metric(metric)
    data = as_vectors(data, None, "data")
    queries = as_vectors(queries, data.shape[1], "queries")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(data):
        raise ValueError(f"k must be an int in [1, {len(data)}] (the number of data vectors), got {k!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    x = prepare(data, metric, "data").astype(np.float64)  # (N, D)
    sq_x = np.einsum("nd,nd->n", x, x)  # (N,)
    ids = np.empty((len(queries), k), dtype=np.int64)
    dists = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        q = prepare(queries[start:start + chunk], metric, "queries").astype(np.float64)  # (c, D)
        dots = q @ x.T  # (c, N)
        if metric == "l2":
            d = np.maximum(np.einsum("cd,cd->c", q, q)[:, None] + sq_x[None, :] - 2.0 * dots, 0.0)
        else:
            d = 1.0 - dots
        if k < d.shape[1]:
            top = np.argpartition(d, k - 1, axis=1)[:, :k]  # (c, k) the k smallest, unordered
        else:
            top = np.tile(np.arange(d.shape[1]), (len(d), 1))
        top_d = np.take_along_axis(d, top, axis=1)  # (c, k)
        order = np.lexsort((top, top_d), axis=1)  # by distance, then id
        ids[start:start + chunk] = np.take_along_axis(top, order, axis=1)
        dists[start:start + chunk] = np.take_along_axis(top_d, order, axis=1)
    return ids, dists
