"""The three distances of the retrieval indexes, with hnswlib's conventions so results compare one to one.

    l2      d(a, b) = sum_i (a_i - b_i)^2        squared Euclidean (hnswlib reports it squared too)
    ip      d(a, b) = 1 - <a, b>                  inner product turned into a distance (can be negative)
    cosine  d(a, b) = 1 - <a, b> / (|a| |b|)      vectors are normalized once, on insert and on query,
                                                  after which cosine is ip on unit vectors

Everything is float32 and vectorized over rows; no Python loop ever runs over the dimensions.
"""

from __future__ import annotations

import numpy as np

METRICS = ("l2", "cosine", "ip")


def check_metric(metric: str) -> str:
    """Return `metric` if it is one of METRICS, else raise a ValueError naming the choices."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def as_vectors(x, dim: int | None, name: str = "vectors") -> np.ndarray:
    """Validate and convert `x` to a C-contiguous float32 array (n, dim); a single (dim,) vector becomes (1, dim).

    Raises TypeError for non-numeric input and ValueError for a wrong shape, an empty array or NaN/inf values.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, dim) or (dim,), got shape {np.shape(x)}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have dimension {dim}, got shape {np.shape(x)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one vector of at least one dimension, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} must be finite, but row {bad} holds NaN or inf")
    return arr


def prepare(x: np.ndarray, metric: str, name: str = "vectors") -> np.ndarray:
    """What the index stores for `x` (n, D) float32: unchanged for l2 and ip, unit-normalized for cosine."""
    if metric != "cosine":
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    if (norms == 0).any():
        bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise ValueError(f"{name}: row {bad} is the zero vector, which has no cosine distance to anything")
    return x / norms


def rowwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance between row i of a (n, D) and row i of b (n, D): (n,) float32 (vectors already `prepare`d)."""
    if metric == "l2":
        diff = a - b  # (n, D)
        return np.einsum("nd,nd->n", diff, diff)
    return 1.0 - np.einsum("nd,nd->n", a, b)


def pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """All distances between rows of a (n, D) and rows of b (m, D): (n, m) float32, one matrix product."""
    dots = a @ b.T  # (n, m)
    if metric == "l2":
        sq_a = np.einsum("nd,nd->n", a, a)
        sq_b = np.einsum("md,md->m", b, b)
        return np.maximum(sq_a[:, None] + sq_b[None, :] - 2.0 * dots, 0.0)
    return 1.0 - dots


def batched_pairwise(x: np.ndarray, metric: str) -> np.ndarray:
    """Distances among the C vectors of each of R groups x (R, C, D): (R, C, C) float32."""
    dots = np.matmul(x, x.transpose(0, 2, 1))  # (R, C, C)
    if metric == "l2":
        sq = np.einsum("rcd,rcd->rc", x, x)  # (R, C)
        return np.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * dots, 0.0)
    return 1.0 - dots


def one_to_group(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """Distance from y[r] (R, D) to each of the S vectors x[r] (R, S, D): (R, S) float32."""
    if metric == "l2":
        diff = x - y[:, None, :]  # (R, S, D)
        return np.einsum("rsd,rsd->rs", diff, diff)
    return 1.0 - np.einsum("rsd,rd->rs", x, y)


def to_query(x: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Distance from one query q (D,) to each row of x (n, D): (n,) float32."""
    if metric == "l2":
        diff = x - q  # (n, D)
        return np.einsum("nd,nd->n", diff, diff)
    return 1.0 - x @ q
