"""A navigable small world graph (Malkov, Ponomarenko, Logvinov & Krylov, 2014, Information Systems 45):
one layer, the idea HNSW grew from.

Items are inserted one by one; each links (both ways) to the M nearest items a beam search over the
graph so far can find. Early items get links across the whole space (when they arrived, everything was far),
later ones get short links, so the graph holds both the long jumps and the local roads a greedy walk needs.
Degrees are not capped and links are never pruned, as in the paper. Its weakness: a greedy walk from far
away can stop at a local minimum, a node with no neighbour closer to the query, that is not the nearest;
HNSW's layers and its neighbour heuristic are the fixes.

Written for reading: plain Python lists and heapq, distances vectorized over a neighbour list.
"""

from __future__ import annotations

import heapq

import numpy as np

from minimodels.retrieval.distances import as_vectors, check_metric, prepare, to_query


class NSW:
    """Single-layer navigable small world graph; node ids are 0, 1, ... in order of insertion."""

    def __init__(self, dim: int, M: int = 8, ef_construction: int = 32, metric: str = "l2", seed: int = 0):
        for name, value, low in (("dim", dim, 1), ("M", M, 1), ("ef_construction", ef_construction, 1),
                                 ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.dim, self.M, self.ef_construction, self.metric = dim, M, ef_construction, check_metric(metric)
        self._rng = np.random.default_rng(seed)
        self._vectors = np.empty((0, dim), dtype=np.float32)
        self._n = 0
        self.links: list[list[int]] = []  # node -> neighbour nodes
        self.evaluations = 0  # distances computed by searches (construction included)

    def __len__(self) -> int:
        return self._n

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[:self._n]

    def _dist(self, nodes: list[int], q: np.ndarray) -> np.ndarray:
        self.evaluations += len(nodes)
        return to_query(self._vectors[nodes], q, self.metric)

    def add(self, vectors) -> np.ndarray:
        """Insert vectors (n, dim) one by one; returns their node ids."""
        x = prepare(as_vectors(vectors, self.dim, "vectors"), self.metric, "vectors")
        if self._n + len(x) > len(self._vectors):
            grown = np.empty((max(2 * len(self._vectors), self._n + len(x)), self.dim), dtype=np.float32)
            grown[:self._n] = self._vectors[:self._n]
            self._vectors = grown
        start = self._n
        for q in x:
            node = self._n
            self._vectors[node] = q
            nearest = [] if node == 0 else self._beam(q, [0], self.ef_construction)[:self.M]
            self.links.append([])
            self._n += 1
            for _, other in nearest:
                self.links[node].append(other)
                self.links[other].append(node)
        return np.arange(start, self._n)

    def _beam(self, q: np.ndarray, starts: list[int], ef: int) -> list[tuple[float, int]]:
        """Algorithm 2 of HNSW on this one layer: the ef closest (distance, node) found, closest first."""
        d0 = self._dist(starts, q)
        visited = set(starts)
        candidates = [(float(d), s) for d, s in zip(d0, starts, strict=True)]  # min-heap of nodes to expand
        heapq.heapify(candidates)
        best = [(-d, s) for d, s in candidates]  # max-heap (negated) of the ef closest so far
        heapq.heapify(best)
        while len(best) > ef:
            heapq.heappop(best)
        while candidates:
            d, node = heapq.heappop(candidates)
            if d > -best[0][0]:
                break  # the closest candidate is farther than the farthest result: no improvement possible
            fresh = [nb for nb in self.links[node] if nb not in visited]
            visited.update(fresh)
            if not fresh:
                continue
            for dn, nb in zip(self._dist(fresh, q).tolist(), fresh, strict=True):
                if len(best) < ef or dn < -best[0][0]:
                    heapq.heappush(candidates, (dn, nb))
                    heapq.heappush(best, (-dn, nb))
                    if len(best) > ef:
                        heapq.heappop(best)
        return sorted((-d, s) for d, s in best)

    def greedy_walk(self, query, start: int = 0) -> list[int]:
        """The path of a greedy walk from `start`: always to the neighbour closest to the query, while it is
        closer than where the walk stands. The last node is a local minimum, not always the nearest item."""
        q = prepare(as_vectors(query, self.dim, "query"), self.metric, "query")[0]
        if not 0 <= start < self._n:
            raise ValueError(f"start must be a node in [0, {self._n}), got {start}")
        path = [start]
        here = float(self._dist([start], q)[0])
        while self.links[path[-1]]:
            nbrs = self.links[path[-1]]
            d = self._dist(nbrs, q)
            best = int(d.argmin())
            if d[best] >= here:
                break
            here = float(d[best])
            path.append(nbrs[best])
        return path

    def search(self, queries, k: int, ef: int | None = None, starts: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Beam search of width ef (default max(k, ef_construction)) from `starts` random nodes (the paper's
        restarts; the first start is node 0). Returns (ids (Q, k), distances (Q, k))."""
        if self._n == 0:
            raise ValueError("search on an empty NSW: add vectors first")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._n:
            raise ValueError(f"k must be an int in [1, {self._n}], got {k!r}")
        if not isinstance(starts, int) or starts < 1:
            raise ValueError(f"starts must be a positive int, got {starts!r}")
        ef = max(k, self.ef_construction if ef is None else ef)
        q = prepare(as_vectors(queries, self.dim, "queries"), self.metric, "queries")
        ids = np.empty((len(q), k), dtype=np.int64)
        dists = np.empty((len(q), k), dtype=np.float32)
        for i, qi in enumerate(q):
            entry = [0] + self._rng.integers(0, self._n, starts - 1).tolist()
            found = self._beam(qi, sorted(set(entry)), ef)[:k]
            dists[i], ids[i] = zip(*found, strict=True)
        return ids, dists
