"""Which candidates become a node's neighbours: the heuristic of Malkov & Yashunin (2016, Algorithm 4).

Go through the candidates from the closest; keep a candidate e unless an already kept neighbour r is closer
to e than the node q is (d(e, r) < d(e, q)): then e is reached through r anyway, and a link in another
direction is worth more. On clustered data this keeps the links that bridge clusters, which plain "M
nearest" would drop. As in hnswlib (no candidate extension, no keeping of pruned links), when fewer than M
candidates are offered all are kept.

The loop runs over candidate positions (at most ef_construction steps) and is vectorized over the rows, so
many nodes are connected in one call; a candidate is compared only with the (at most m) neighbours kept so
far, never with all other candidates.
"""

from __future__ import annotations

import numpy as np

from minimodels.retrieval.distances import one_to_group

_FIRST_SLOTS = 4  # kept neighbours every candidate is compared with before the others


def select_neighbors(cand_ids: np.ndarray, cand_dist: np.ndarray, vectors: np.ndarray, metric: str,
                     m: int) -> np.ndarray:
    """Algorithm 4 for R nodes at once: up to m neighbours of each, from its candidates.

    cand_ids (R, C) candidate nodes sorted by distance to their row's node, -1 padding at the end;
    cand_dist (R, C) those distances (inf on padding); vectors (N, D) the stored vectors.
    Returns (R, m) chosen ids in order of choice, -1 padded.
    """
    n_rows, n_cand = cand_ids.shape
    out = np.full((n_rows, m), -1, dtype=np.int64)
    n_valid = (cand_ids >= 0).sum(axis=1)
    keep_all = n_valid < m  # hnswlib: fewer candidates than m -> all of them, no pruning
    out[keep_all, :min(m, n_cand)] = cand_ids[keep_all, :m]
    rows = np.flatnonzero(~keep_all)  # the rows still choosing, compacted now and then
    kept = np.zeros((len(rows), m, vectors.shape[1]), dtype=np.float32)  # (r, m, D) vectors kept so far
    count = np.zeros(len(rows), dtype=np.int64)
    limit = n_valid[rows]
    slots = np.arange(m)
    first = min(_FIRST_SLOTS, m)
    for i in range(n_cand):
        live = (count < m) & (i < limit)
        n_live = int(live.sum())
        if n_live == 0:
            break
        if n_live < 0.75 * len(rows):  # drop finished rows so that the work follows the live ones
            rows, kept, count, limit, live = rows[live], kept[live], count[live], limit[live], live[live]
        e = vectors[cand_ids[rows, i]]  # (r, D) the candidate of each row
        d_q = cand_dist[rows, i, None]  # (r, 1) its distance to the row's node
        # the closest kept neighbours block most candidates: test them first, the others only where needed
        blocked = ((one_to_group(kept[:, :first], e, metric) < d_q) & (slots[:first] < count[:, None])).any(axis=1)
        rest = np.flatnonzero(~blocked & live & (count > first))
        if rest.size:
            d_rest = one_to_group(kept[rest, first:], e[rest], metric)  # (r', m - first)
            blocked[rest] = ((d_rest < d_q[rest]) & (slots[first:] < count[rest, None])).any(axis=1)
        take = np.flatnonzero(live & ~blocked)
        out[rows[take], count[take]] = cand_ids[rows[take], i]
        kept[take, count[take]] = e[take]
        count[take] += 1
    return out
