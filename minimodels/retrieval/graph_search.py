"""Search on one layer of a proximity graph, run for a whole batch of queries at once.

`greedy_descent` is the walk HNSW makes on its upper layers: move to the closest neighbour while one is
closer. `beam_search` is Algorithm 2 of Malkov & Yashunin (2016, arXiv:1603.09320): keep the ef closest
nodes found so far (W), expand the closest node not yet expanded, stop when the closest candidate left is
farther than the farthest of W.

Python would spend its time on one query's heap pushes, so the queries move in lock step instead: at each
step every unfinished query expands one node, and the work is done on (queries, neighbours) arrays. Each
query follows exactly the sequence of expansions of the one-query heap algorithm (tests check it against a
heapq version); only the bookkeeping is shared.

A node and its distance travel as one int64 sort key, so one `np.sort` orders both:

    key = (float32 distance bits, made monotone) << 32 | node << 1 | expanded flag

Graph layers are stored as `links` (rows, max_degree) int32 padded with -1, and, for the sparse upper layers,
`rows` (nodes,) mapping a node to its row (None when row == node, as on layer 0).
"""

from __future__ import annotations

import numpy as np

from minimodels.retrieval.distances import rowwise

EMPTY = np.iinfo(np.int64).max  # an empty slot: sorts after every real key, and its flag bit reads "expanded"
_LOW32 = np.int64(0xFFFFFFFF)


def pack(dists: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Sort keys for (distance, node) pairs: ordering the keys orders by distance, then by node."""
    bits = np.ascontiguousarray(dists, dtype=np.float32).view(np.int32)
    ordered = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)  # monotone in the float
    return (ordered << 32) | (np.asarray(nodes, dtype=np.int64) << 1)


def unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes int64, distances float32) of `keys`; EMPTY slots give node -1 and distance inf."""
    empty = keys == EMPTY
    nodes = np.where(empty, -1, (keys & _LOW32) >> 1)
    ordered = (keys >> 32).astype(np.int32)
    bits = np.where(ordered < 0, ordered ^ np.int32(0x7FFFFFFF), ordered)
    dists = np.where(empty, np.float32(np.inf), bits.view(np.float32))
    return nodes, dists


def neighbours_of(links: np.ndarray, rows: np.ndarray | None, nodes: np.ndarray) -> np.ndarray:
    """Neighbour lists (len(nodes), max_degree) of `nodes` on one layer, -1 padded."""
    return links[nodes] if rows is None else links[rows[nodes]]


def greedy_descent(queries: np.ndarray, entry: np.ndarray, entry_dist: np.ndarray, vectors: np.ndarray,
                   metric: str, links: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """From `entry` (Q,), move each query to its closest neighbour while that is closer (ef = 1 search).

    queries (Q, D); returns the local minima (Q,) int64 and their distances (Q,) float32.
    """
    current = np.asarray(entry, dtype=np.int64).copy()
    current_dist = np.asarray(entry_dist, dtype=np.float32).copy()
    active = np.arange(len(current))
    while active.size:
        nb = neighbours_of(links, rows, current[active])  # (A, deg)
        qi, col = np.nonzero(nb >= 0)
        d = np.full(nb.shape, np.inf, dtype=np.float32)
        d[qi, col] = rowwise(vectors[nb[qi, col]], queries[active[qi]], metric)
        best = d.argmin(axis=1)
        best_d = d[np.arange(len(active)), best]
        moved = best_d < current_dist[active]
        active = active[moved]
        current[active] = nb[moved, best[moved]]
        current_dist[active] = best_d[moved]
    return current, current_dist


def beam_search(queries: np.ndarray, entry: np.ndarray, entry_dist: np.ndarray, vectors: np.ndarray, metric: str,
                links: np.ndarray, rows: np.ndarray | None, ef: int, n_nodes: int,
                allowed: np.ndarray | None = None, candidate_cap: int | None = None, expand: int = 1) -> np.ndarray:
    """The ef nearest nodes each query finds on one layer, as sorted keys (Q, ef) (EMPTY where fewer).

    queries (Q, D) prepared vectors; entry (Q,) start nodes; n_nodes: node ids are < n_nodes.
    allowed (n_nodes,) bool, or None: when given, every node is walked through but only allowed ones are
    returned (deleted items, metadata filters), as hnswlib does; the frontier then keeps at most
    `candidate_cap` nodes (default 4 * ef).
    expand: nodes each query expands per step. 1 is Algorithm 2 exactly; more (used while building) expands
    the few closest unexpanded nodes together: fewer, larger steps, a superset of the work, same stop rule.
    """
    if allowed is None:
        return _beam_search_all(queries, entry, entry_dist, vectors, metric, links, rows, ef, n_nodes, expand)
    cap = candidate_cap if candidate_cap is not None else 4 * ef
    return _beam_search_allowed(queries, entry, entry_dist, vectors, metric, links, rows, ef, n_nodes, allowed, cap)


def _expand(queries, query_rows, nodes, vectors, metric, links, rows, visited, stride, scratch):
    """Neighbours of `nodes` (E,) not yet visited by their query (query_rows (E,)): the entry of `nodes` each
    comes from, its column in the neighbour list, and its key. visited is the flat (Q * stride,) mask;
    scratch, an int32 array as large, is given when two nodes of one query can share a neighbour.
    """
    nb = neighbours_of(links, rows, nodes)  # (E, deg)
    deg = nb.shape[1]
    flat = ((query_rows * stride)[:, None] + nb).ravel()  # a -1 pad lands on the previous row's last cell (True)
    where = np.flatnonzero(~visited[flat])  # positions in the (E, deg) grid
    cells = flat[where]
    if scratch is not None:  # keep one of each repeated cell: the last write to scratch wins
        order = np.arange(len(cells), dtype=np.int32)
        scratch[cells] = order
        once = scratch[cells] == order
        cells, where = cells[once], where[once]
    visited[cells] = True
    ids = nb.ravel()[where].astype(np.int64)
    e_idx = where // deg
    x = np.take(vectors, ids, axis=0)  # (K, D) fresh copies, so l2 can subtract in place
    q = np.take(queries, query_rows[e_idx], axis=0)  # (K, D)
    if metric == "l2":
        d = np.einsum("kd,kd->k", np.subtract(x, q, out=x), x)  # the same arithmetic as distances.rowwise
    else:
        d = rowwise(x, q, metric)
    keys = pack(d, ids)
    return e_idx, where - e_idx * deg, keys, deg


def _new_visited(n_queries: int, n_nodes: int, entry: np.ndarray) -> tuple[np.ndarray, int]:
    """A flat (Q * (N + 1),) mask: row q holds nodes 0..N-1 then a cell standing for the -1 padding."""
    stride = n_nodes + 1
    visited = np.zeros(n_queries * stride, dtype=bool)
    visited[np.arange(n_queries) * stride + n_nodes] = True
    visited[np.arange(n_queries) * stride + entry] = True
    return visited, stride


def _beam_search_all(queries, entry, entry_dist, vectors, metric, links, rows, ef, n_nodes, expand):
    """Every node may be returned: W is also the candidate set (its unexpanded members, closest first)."""
    n_queries = len(queries)
    out = np.full((n_queries, ef), EMPTY, dtype=np.int64)
    visited, stride = _new_visited(n_queries, n_nodes, entry)
    scratch = np.empty(len(visited), dtype=np.int32) if expand > 1 else None
    w = out.copy()  # (A, ef) keys of the active queries, sorted
    w[:, 0] = pack(entry_dist, entry)
    active = np.arange(n_queries)
    while active.size:
        unexpanded = (w & 1) == 0  # (A, ef); EMPTY reads as expanded
        has = unexpanded.any(axis=1)
        if not has.all():  # finished: the closest candidate is farther than all of W (none left in W)
            out[active[~has]] = w[~has]
            active, w, unexpanded = active[has], w[has], unexpanded[has]
            if not active.size:
                break
        if expand == 1:  # the closest unexpanded node of each query
            qrow, pos = np.arange(len(active)), unexpanded.argmax(axis=1)
            rank = np.zeros(len(active), dtype=np.int64)
        else:  # the `expand` closest unexpanded nodes of each query
            qrow, pos = np.nonzero(unexpanded & (np.cumsum(unexpanded, axis=1, dtype=np.int16) <= expand))
            rank = np.arange(len(qrow)) - np.searchsorted(qrow, qrow)
        w[qrow, pos] |= 1
        e_idx, col, keys, deg = _expand(queries, active[qrow], (w[qrow, pos] & _LOW32) >> 1, vectors, metric,
                                        links, rows, visited, stride, scratch)
        qi = qrow[e_idx]
        keep = keys < w[qi, -1]  # closer than the farthest of W (always true while W is not full)
        if not keep.any():
            continue
        qi, slot, keys = qi[keep], rank[e_idx[keep]] * deg + col[keep], keys[keep]
        new = np.full((len(active), expand * deg), EMPTY, dtype=np.int64)
        new[qi, slot] = keys
        touched = np.unique(qi)
        w[touched] = np.sort(np.concatenate([w[touched], new[touched]], axis=1), axis=1)[:, :ef]
    return out


def _beam_search_allowed(queries, entry, entry_dist, vectors, metric, links, rows, ef, n_nodes, allowed, cap):
    """Candidates C (any node) and results W (allowed nodes only) kept apart, as in hnswlib's filtered search."""
    n_queries = len(queries)
    out = np.full((n_queries, ef), EMPTY, dtype=np.int64)
    visited, stride = _new_visited(n_queries, n_nodes, entry)
    entry_keys = pack(entry_dist, entry)
    c = np.full((n_queries, cap), EMPTY, dtype=np.int64)  # (A, cap) frontier, sorted
    c[:, 0] = entry_keys
    w = out.copy()  # (A, ef) allowed results, sorted
    w[:, 0] = np.where(allowed[entry], entry_keys, EMPTY)
    active = np.arange(n_queries)
    while active.size:
        bound = w[:, -1]  # EMPTY until W is full: accept everything
        go = (c[:, 0] != EMPTY) & (c[:, 0] <= bound)
        if not go.all():
            out[active[~go]] = w[~go]
            active, w, c, bound = active[go], w[go], c[go], bound[go]
            if not active.size:
                break
        nodes = (c[:, 0] & _LOW32) >> 1
        c[:, 0] = EMPTY
        qi, col, keys, deg = _expand(queries, active, nodes, vectors, metric, links, rows, visited, stride, None)
        keep = keys < bound[qi]
        qi, col, keys = qi[keep], col[keep], keys[keep]
        new = np.full((len(active), deg), EMPTY, dtype=np.int64)
        new[qi, col] = keys
        c = np.sort(np.concatenate([c, new], axis=1), axis=1)[:, :cap]
        ok = allowed[(keys & _LOW32) >> 1]
        if ok.any():
            new[qi[~ok], col[~ok]] = EMPTY
            touched = np.unique(qi[ok])
            w[touched] = np.sort(np.concatenate([w[touched], new[touched]], axis=1), axis=1)[:, :ef]
    return out
