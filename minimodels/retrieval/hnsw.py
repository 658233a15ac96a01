"""Hierarchical Navigable Small World graphs (Malkov & Yashunin, 2016, arXiv:1603.09320), in numpy.

    index = HNSW(dim=64, M=16, ef_construction=200, metric="l2")
    index.add(vectors, metadata=[{"lang": "en"}, ...])        # ids 0, 1, ... unless given
    ids, dists = index.search(queries, k=10, ef=100, filter=lambda m: m["lang"] == "en")
    index.delete([3, 7]); index.save("index.npz"); index = HNSW.load("index.npz")

Each item gets a level drawn as floor(-ln U * mL) with mL = 1 / ln M, so a layer holds about 1/M of the
one below, like the express lanes of a skip list. On every layer an item links to neighbours chosen by the
heuristic of Algorithm 4 (M of them, at most 2M on layer 0 and M above). A search walks greedily down
the sparse upper layers, then runs a beam search of width ef on layer 0.

Insertion is batched: a batch of new items searches the graph as it was before the batch (in lock step,
see `graph_search`), the batch's own members are added to each other's candidates exactly (one distance
matrix), and then all links are written and pruned at once. This keeps what one-by-one insertion finds
and turns Python's per-node work into array work; the first batch, on an empty graph, is exact.

Distances are hnswlib's: squared l2, 1 - <a, b> for ip, 1 - cos for cosine (vectors normalized on insert).
Deleting marks an item: it still routes searches but is never returned (hnswlib's mark_deleted). Adding
an id that exists replaces its vector and metadata (the old entry is marked deleted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minimodels.retrieval.distances import (
    as_vectors,
    check_metric,
    one_to_group,
    pairwise,
    prepare,
    rowwise,
)
from minimodels.retrieval.graph_search import EMPTY, beam_search, greedy_descent, neighbours_of, pack, unpack
from minimodels.retrieval.knn import exact_knn
from minimodels.retrieval.neighbor_selection import select_neighbors

DEFAULT_EF = 50  # ef used by `search` when none is given (raised to k when k is larger)
_VISITED_BUDGET = 1 << 26  # cells of the (queries, nodes) visited matrix of one batch: 64 MB
_FORMAT = "minimodels.hnsw/1"
_MIN_BATCH, _MAX_BATCH = 64, 1024  # items inserted together
_BUILD_EXPAND = 4  # nodes each inserted item expands per lock step of the construction search


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class HNSWConfig:
    """dim: vector length; M: links per node (2M on layer 0); ef_construction: beam width when inserting."""

    dim: int
    M: int = 16
    ef_construction: int = 200
    metric: str = "l2"
    seed: int = 0

    def __post_init__(self):
        _check_int("dim", self.dim, 1)
        _check_int("M", self.M, 2)
        _check_int("ef_construction", self.ef_construction, 1)
        _check_int("seed", self.seed, 0)
        check_metric(self.metric)

    @property
    def level_multiplier(self) -> float:
        """mL = 1 / ln M: the expected share of nodes on layer l is M^-l."""
        return 1.0 / math.log(self.M)

    def max_degree(self, layer: int) -> int:
        return 2 * self.M if layer == 0 else self.M


class HNSW:
    """An HNSW index over float32 vectors with integer ids, metadata, deletes, filters and save/load."""

    def __init__(self, dim: int, M: int = 16, ef_construction: int = 200, metric: str = "l2", seed: int = 0):
        self.config = HNSWConfig(dim, M, ef_construction, metric, seed)
        self.flat_search_cutoff = 1000  # a filter leaving at most this many items is answered by exact scan
        self._rng = np.random.default_rng(seed)
        self._n = 0  # nodes ever inserted (deleted ones included); node = position of insertion
        self._capacity = 0
        self._vectors = np.empty((0, dim), dtype=np.float32)  # (capacity, dim), prepared for the metric
        self._labels = np.empty(0, dtype=np.int64)  # node -> id
        self._levels = np.empty(0, dtype=np.int16)  # node -> top layer
        self._deleted = np.empty(0, dtype=bool)
        self._metadata: list = []
        self._links = [np.empty((0, 2 * M), dtype=np.int32)]  # layer -> (rows, max degree), -1 padded
        self._rows: list[np.ndarray | None] = [None]  # layer >= 1: node -> row of links, -1 if absent
        self._layer_rows = [0]  # rows used on each layer
        self._node_of: dict[int, int] = {}  # live id -> node
        self._next_id = 0
        self._entry = -1  # a node on the top layer
        self._max_level = -1

    # ----------------------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._node_of)

    def __contains__(self, item_id) -> bool:
        return int(item_id) in self._node_of

    def __repr__(self) -> str:
        c = self.config
        return (f"HNSW(dim={c.dim}, M={c.M}, ef_construction={c.ef_construction}, metric={c.metric!r}, "
                f"items={len(self)}, layers={self._max_level + 1})")

    @property
    def ids(self) -> np.ndarray:
        """The live ids, in order of insertion."""
        nodes = np.sort(np.fromiter(self._node_of.values(), dtype=np.int64, count=len(self._node_of)))
        return self._labels[nodes]

    def get_vectors(self, ids) -> np.ndarray:
        """Stored vectors (n, dim) of `ids` (unit-normalized for cosine)."""
        return self._vectors[self._nodes_of(ids)].copy()

    def get_metadata(self, item_id: int):
        return self._metadata[self._nodes_of([item_id])[0]]

    def memory_bytes(self) -> int:
        """Bytes of the vectors, links and per-item arrays in use (what a C implementation would allocate)."""
        n, c = self._n, self.config
        graph = n * c.max_degree(0) * 4 + sum(rows * c.M * 4 + n * 4 for rows in self._layer_rows[1:])
        return n * c.dim * 4 + graph + n * (8 + 2 + 1)

    # ------------------------------------------------------------------------------ graph, for study
    @property
    def entry_point(self) -> int:
        return self._entry

    @property
    def max_level(self) -> int:
        return self._max_level

    @property
    def levels(self) -> np.ndarray:
        """Top layer of each node (node = position of insertion)."""
        return self._levels[:self._n].copy()

    def neighbors(self, node: int, layer: int = 0) -> np.ndarray:
        """Neighbour nodes of `node` on `layer`."""
        node = _check_int("node", node, 0)
        if node >= self._n:
            raise ValueError(f"node must be < {self._n} (nodes inserted), got {node}")
        if not 0 <= layer <= self._levels[node]:
            raise ValueError(f"layer must be in [0, {self._levels[node]}] for node {node}, got {layer}")
        links = neighbours_of(self._links[layer], self._rows[layer], np.array([node]))[0]
        return links[links >= 0].astype(np.int64)

    def search_layer(self, queries, entry: int, ef: int, layer: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Algorithm 2 on one layer from node `entry`: (nodes (Q, ef), distances (Q, ef)), -1 / inf padded."""
        q = prepare(as_vectors(queries, self.config.dim, "queries"), self.config.metric, "queries")
        entry, layer = _check_int("entry", entry, 0), _check_int("layer", layer, 0)
        if entry >= self._n or self._levels[entry] < layer:
            raise ValueError(f"entry must be a node on layer {layer} (nodes: {self._n}, top layer "
                             f"{self._max_level}), got node {entry}")
        entry = np.full(len(q), entry, dtype=np.int64)
        keys = beam_search(q, entry, rowwise(self._vectors[entry], q, self.config.metric), self._vectors,
                           self.config.metric, self._links[layer], self._rows[layer], _check_int("ef", ef, 1),
                           self._n)
        return unpack(keys)

    # ------------------------------------------------------------------------------------------ add
    def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        """Insert vectors (n, dim); ids default to the next unused integers. Returns the ids (n,) int64.

        An id already in the index is updated: its old vector and metadata are replaced.
        metadata: None, or a sequence of n objects (dicts), handed to `search`'s filter predicate.
        """
        cfg = self.config
        x = prepare(as_vectors(vectors, cfg.dim, "vectors"), cfg.metric, "vectors")
        n = len(x)
        labels = self._check_new_ids(ids, n)
        if metadata is None:
            metadata = [{} for _ in range(n)]
        elif isinstance(metadata, (str, bytes, dict)) or not hasattr(metadata, "__len__") or len(metadata) != n:
            raise ValueError(f"metadata must be None or a sequence of {n} items (one per vector), got {metadata!r:.80}")
        for label in labels.tolist():  # an update: the old entry stays as a routing node, never returned
            old = self._node_of.pop(label, None)
            if old is not None:
                self._deleted[old] = True
        nodes = np.arange(self._n, self._n + n)
        self._reserve(self._n + n)
        levels = np.floor(-np.log1p(-self._rng.random(n)) * cfg.level_multiplier).astype(np.int16)
        self._vectors[nodes] = x
        self._labels[nodes] = labels
        self._levels[nodes] = levels
        self._deleted[nodes] = False
        self._metadata.extend(metadata)
        for layer in range(1, int(levels.max()) + 1):
            self._add_layer_rows(nodes[levels >= layer], layer)
        self._node_of.update(zip(labels.tolist(), nodes.tolist(), strict=True))
        self._next_id = max(self._next_id, int(labels.max()) + 1)
        self._n += n
        start = 0
        while start < n:  # a batch is never larger than the graph it searches (doubling from 64 items)
            linked = int(nodes[start])
            batch = int(np.clip(min(linked, _VISITED_BUDGET // self._n), _MIN_BATCH, _MAX_BATCH))
            self._insert_batch(nodes[start:start + batch])
            start += batch
        return labels

    def _check_new_ids(self, ids, n: int) -> np.ndarray:
        if ids is None:
            return np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        arr = np.asarray(ids)
        if arr.ndim == 0:
            arr = arr[None]
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        if arr.shape != (n,):
            raise ValueError(f"ids must hold one id per vector ({n}), got shape {arr.shape}")
        if (arr < 0).any() or (arr.dtype == np.uint64 and (arr > np.iinfo(np.int64).max).any()):
            raise ValueError(f"ids must be in [0, 2**63), got {arr[(arr < 0) | (arr > np.iinfo(np.int64).max)][0]}")
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"ids must be unique within one add call, got {int(uniq[counts > 1][0])} "
                             f"{int(counts.max())} times")
        return arr.astype(np.int64)

    def _reserve(self, size: int) -> None:
        """Grow the per-node arrays (doubling) so that `size` nodes fit."""
        if size <= self._capacity:
            return
        cap = max(size, 2 * self._capacity, 1024)
        grow = cap - self._capacity
        self._vectors = np.concatenate([self._vectors, np.empty((grow, self.config.dim), dtype=np.float32)])
        self._labels = np.concatenate([self._labels, np.zeros(grow, dtype=np.int64)])
        self._levels = np.concatenate([self._levels, np.zeros(grow, dtype=np.int16)])
        self._deleted = np.concatenate([self._deleted, np.zeros(grow, dtype=bool)])
        self._links[0] = np.concatenate([self._links[0], np.full((grow, self.config.max_degree(0)), -1, np.int32)])
        for layer in range(1, len(self._rows)):
            self._rows[layer] = np.concatenate([self._rows[layer], np.full(grow, -1, dtype=np.int32)])
        self._capacity = cap

    def _add_layer_rows(self, nodes: np.ndarray, layer: int) -> None:
        """Give `nodes` a (still empty) neighbour row on an upper `layer`."""
        while len(self._rows) <= layer:
            self._rows.append(np.full(self._capacity, -1, dtype=np.int32))
            self._links.append(np.empty((0, self.config.M), dtype=np.int32))
            self._layer_rows.append(0)
        used = self._layer_rows[layer]
        if used + len(nodes) > len(self._links[layer]):
            grow = max(used + len(nodes), 2 * len(self._links[layer]), 64) - len(self._links[layer])
            self._links[layer] = np.concatenate([self._links[layer], np.full((grow, self.config.M), -1, np.int32)])
        self._rows[layer][nodes] = np.arange(used, used + len(nodes), dtype=np.int32)
        self._layer_rows[layer] = used + len(nodes)

    def _insert_batch(self, nodes: np.ndarray) -> None:
        """Insert `nodes` (stored, not yet linked): search the graph of earlier nodes layer by layer, link."""
        cfg, vectors = self.config, self._vectors
        q = vectors[nodes]  # (B, D)
        levels = self._levels[nodes].astype(np.int64)
        old_top, n_old = self._max_level, int(nodes[0])
        entry = np.full(len(nodes), max(self._entry, 0), dtype=np.int64)
        entry_dist = rowwise(vectors[entry], q, cfg.metric)
        for layer in range(max(old_top, int(levels.max())), -1, -1):
            on = levels >= layer  # the batch members that live on this layer
            found = None  # (B_on, ef_construction) keys found in the old graph
            if 0 <= layer <= old_top:
                links, rows = self._links[layer], self._rows[layer]
                if (~on).any():
                    entry[~on], entry_dist[~on] = greedy_descent(q[~on], entry[~on], entry_dist[~on], vectors,
                                                                 cfg.metric, links, rows)
                if on.any():
                    found = beam_search(q[on], entry[on], entry_dist[on], vectors, cfg.metric, links, rows,
                                        cfg.ef_construction, n_old, expand=_BUILD_EXPAND)
                    entry[on], entry_dist[on] = unpack(found[:, 0])
            if on.any():
                self._connect(nodes[on], q[on], found, layer)
        if int(levels.max()) > old_top:
            self._entry, self._max_level = int(nodes[int(levels.argmax())]), int(levels.max())

    def _row_of(self, nodes: np.ndarray, layer: int) -> np.ndarray:
        return nodes if layer == 0 else self._rows[layer][nodes]

    def _connect(self, nodes: np.ndarray, q: np.ndarray, found: np.ndarray | None, layer: int) -> None:
        """Choose each new node's neighbours on `layer` (Algorithm 4), then link them back, pruning full lists."""
        cfg, metric = self.config, self.config.metric
        within = pack(pairwise(q, q, metric), np.broadcast_to(nodes, (len(nodes), len(nodes))))  # (B, B)
        np.fill_diagonal(within, EMPTY)
        keys = within if found is None else np.concatenate([found, within], axis=1)
        keys = np.sort(keys, axis=1)[:, :cfg.ef_construction]  # candidates W, closest first
        cand, cand_dist = unpack(keys)
        chosen = select_neighbors(cand, cand_dist, self._vectors, metric, cfg.M)  # (B, M)
        links = self._links[layer]
        links[self._row_of(nodes, layer), :cfg.M] = chosen
        # back links: each chosen neighbour e gets the new node; lists over the limit are pruned by Algorithm 4
        r, j = np.nonzero(chosen >= 0)
        if not r.size:  # a lone node on a new top layer
            return
        target, source = chosen[r, j], nodes[r]
        order = np.argsort(target, kind="stable")
        target, source = target[order], source[order]
        targets, start, counts = np.unique(target, return_index=True, return_counts=True)
        group = np.repeat(np.arange(len(targets)), counts)
        incoming = np.full((len(targets), int(counts.max())), -1, dtype=np.int64)
        incoming[group, np.arange(len(target)) - start[group]] = source
        union = np.sort(np.concatenate([neighbours_of(links, self._rows[layer], targets), incoming], axis=1), axis=1)
        union[:, 1:][union[:, 1:] == union[:, :-1]] = -1  # a new node that already links there (same batch)
        union = -np.sort(-union, axis=1)  # valid ids first, -1 padding last
        size = (union >= 0).sum(axis=1)
        max_degree = cfg.max_degree(layer)
        fits = size <= max_degree
        links[self._row_of(targets[fits], layer)] = union[fits, :max_degree]
        if fits.all():
            return
        over, over_ids = targets[~fits], union[~fits]
        by_size = np.argsort(size[~fits], kind="stable")
        over, over_ids = over[by_size], over_ids[by_size]
        dist = one_to_group(self._vectors[np.maximum(over_ids, 0)], self._vectors[over], metric)  # (R, S)
        keys = np.sort(np.where(over_ids >= 0, pack(dist, np.maximum(over_ids, 0)), EMPTY), axis=1)
        cand, cand_dist = unpack(keys)
        links[self._row_of(over, layer)] = select_neighbors(cand, cand_dist, self._vectors, metric,
                                                                          max_degree)

    # --------------------------------------------------------------------------------------- search
    def search(self, queries, k: int, ef: int | None = None,
               filter: Callable[[object], bool] | Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k approximate nearest items of each query: (ids (Q, k) int64, distances (Q, k) float32).

        ef: beam width on layer 0 (default max(k, DEFAULT_EF)); larger is slower and more exact.
        filter: a predicate on an item's metadata, or a collection of allowed ids. Only allowed, live items
        are returned; when fewer than k exist, rows are padded with id -1 and distance inf. When a filter
        leaves at most `flat_search_cutoff` items, they are scanned exactly instead of walking the graph.
        """
        cfg = self.config
        if len(self) == 0:
            raise ValueError("search on an empty index: add vectors first")
        q = prepare(as_vectors(queries, cfg.dim, "queries"), cfg.metric, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if filter is None and k > len(self):
            raise ValueError(f"k must be at most the number of items in the index ({len(self)}), got {k}")
        ef = max(DEFAULT_EF if ef is None else _check_int("ef", ef, 1), k)
        allowed = self._allowed(filter)
        n_allowed = len(self) if allowed is None else int(allowed.sum())
        ids = np.full((len(q), k), -1, dtype=np.int64)
        dists = np.full((len(q), k), np.inf, dtype=np.float32)
        take = min(k, n_allowed)
        if take == 0:
            return ids, dists
        if filter is not None and n_allowed <= self.flat_search_cutoff:
            nodes, found = self._flat_search(q, take, allowed)
        else:
            nodes, found = self._graph_search(q, ef, allowed)
            nodes, found = nodes[:, :take], found[:, :take]
            short = (nodes < 0).any(axis=1)  # the walk found fewer than k allowed items: scan them exactly
            if short.any():
                nodes[short], found[short] = self._flat_search(q[short], take, allowed)
        ids[:, :take], dists[:, :take] = self._labels[nodes], found
        return ids, dists

    def _allowed(self, filter) -> np.ndarray | None:
        """Mask (nodes,) of live items passing `filter`; None when every node may be returned."""
        if filter is None:
            if not self._deleted[:self._n].any():
                return None
            return ~self._deleted[:self._n]
        mask = np.zeros(self._n, dtype=bool)
        if callable(filter):
            live = np.flatnonzero(~self._deleted[:self._n])
            mask[live] = [bool(filter(self._metadata[node])) for node in live.tolist()]
        elif isinstance(filter, (set, frozenset, list, tuple, range, np.ndarray)):
            nodes = [self._node_of[i] for i in np.asarray(list(filter), dtype=np.int64).tolist() if i in self._node_of]
            mask[nodes] = True
        else:
            raise TypeError(f"filter must be None, a predicate on metadata or a collection of ids, got "
                            f"{type(filter).__name__}")
        return mask

    def _graph_search(self, q: np.ndarray, ef: int, allowed: np.ndarray | None):
        cfg = self.config
        nodes = np.empty((len(q), ef), dtype=np.int64)
        dists = np.empty((len(q), ef), dtype=np.float32)
        chunk = int(np.clip(_VISITED_BUDGET // self._n, 16, 4096))
        for start in range(0, len(q), chunk):
            qc = q[start:start + chunk]
            entry = np.full(len(qc), self._entry, dtype=np.int64)
            entry_dist = rowwise(self._vectors[entry], qc, cfg.metric)
            for layer in range(self._max_level, 0, -1):
                entry, entry_dist = greedy_descent(qc, entry, entry_dist, self._vectors, cfg.metric,
                                                   self._links[layer], self._rows[layer])
            keys = beam_search(qc, entry, entry_dist, self._vectors, cfg.metric, self._links[0], None, ef, self._n,
                               allowed)
            nodes[start:start + chunk], dists[start:start + chunk] = unpack(keys)
        return nodes, dists

    def _flat_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None):
        candidates = np.flatnonzero(allowed) if allowed is not None else np.flatnonzero(~self._deleted[:self._n])
        ids, _ = exact_knn(self._vectors[candidates], q, k, self.config.metric)
        nodes = candidates[ids]  # (Q, k)
        d = rowwise(self._vectors[nodes.reshape(-1)], np.repeat(q, k, axis=0), self.config.metric).reshape(len(q), k)
        order = np.argsort(d, axis=1, kind="stable")  # the float32 distances reported, in order
        return np.take_along_axis(nodes, order, axis=1), np.take_along_axis(d, order, axis=1)

    # --------------------------------------------------------------------------------------- delete
    def delete(self, ids) -> None:
        """Remove `ids` from results (their nodes keep routing searches, as hnswlib's mark_deleted does)."""
        for node in self._nodes_of(ids).tolist():
            self._deleted[node] = True
            self._node_of.pop(int(self._labels[node]), None)

    def _nodes_of(self, ids) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(ids))
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        missing = [i for i in arr.tolist() if i not in self._node_of]
        if missing:
            raise ValueError(f"ids not in the index: {missing[:10]}")
        return np.array([self._node_of[i] for i in arr.tolist()], dtype=np.int64)

    # ------------------------------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> None:
        """Write the index to one .npz file (arrays plus a JSON header; metadata must be JSON-serializable)."""
        n, c = self._n, self.config
        try:
            metadata = json.dumps(self._metadata)
        except TypeError as err:
            raise TypeError(f"metadata must be JSON-serializable to save the index: {err}") from None
        header = {
            "format": _FORMAT, "config": {"dim": c.dim, "M": c.M, "ef_construction": c.ef_construction,
                                          "metric": c.metric, "seed": c.seed},
            "n": n, "entry": self._entry, "max_level": self._max_level, "next_id": self._next_id,
            "layer_rows": self._layer_rows, "flat_search_cutoff": self.flat_search_cutoff,
            "rng": self._rng.bit_generator.state,
        }
        arrays = {"vectors": self._vectors[:n], "labels": self._labels[:n], "levels": self._levels[:n],
                  "deleted": self._deleted[:n], "links_0": self._links[0][:n]}
        for layer in range(1, len(self._rows)):
            arrays[f"links_{layer}"] = self._links[layer][:self._layer_rows[layer]]
            arrays[f"rows_{layer}"] = self._rows[layer][:n]
        with open(path, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), metadata=np.array(metadata), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> HNSW:
        """Read an index written by `save`."""
        with np.load(path, allow_pickle=False) as f:
            if "header" not in f.files:
                raise ValueError(f"{path} is not an HNSW index file (no header)")
            header = json.loads(str(f["header"]))
            if header.get("format") != _FORMAT:
                raise ValueError(f"{path} is not an HNSW index file (format {header.get('format')!r})")
            index = cls(**header["config"])
            n = header["n"]
            index._reserve(n)
            index._n, index._entry, index._max_level = n, header["entry"], header["max_level"]
            index._next_id, index.flat_search_cutoff = header["next_id"], header["flat_search_cutoff"]
            index._rng.bit_generator.state = header["rng"]
            index._vectors[:n], index._labels[:n] = f["vectors"], f["labels"]
            index._levels[:n], index._deleted[:n] = f["levels"], f["deleted"]
            index._links[0][:n] = f["links_0"]
            for layer in range(1, len(header["layer_rows"])):
                index._rows.append(np.full(index._capacity, -1, dtype=np.int32))
                index._rows[layer][:n] = f[f"rows_{layer}"]
                index._links.append(np.array(f[f"links_{layer}"]))
                index._layer_rows.append(header["layer_rows"][layer])
            index._metadata = json.loads(str(f["metadata"]))
        live = np.flatnonzero(~index._deleted[:n])
        index._node_of = dict(zip(index._labels[live].tolist(), live.tolist(), strict=True))
        return index
