"""Seeded synthetic data for the vector-search lessons and benchmarks: overlapping Gaussian clusters.

Real embeddings are clustered (topics, languages), which is what makes greedy graph walks fall into local
minima; `spread` sets how far apart the cluster centres are relative to the unit noise around them.
"""

from __future__ import annotations

import numpy as np


def clustered_vectors(n: int, dim: int, n_clusters: int = 50, spread: float = 0.6, seed: int = 0) -> np.ndarray:
    """(n, dim) float32: centres ~ N(0, spread^2 I), points = a random centre + N(0, I) noise."""
    for name, value in (("n", n), ("dim", dim), ("n_clusters", n_clusters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0, got {spread!r}")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (n_clusters, dim))
    return (centres[rng.integers(0, n_clusters, n)] + rng.normal(0.0, 1.0, (n, dim))).astype(np.float32)
