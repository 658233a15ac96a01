"""HNSW: recall against brute force written here and against hnswlib on the same clustered data, the graph's
invariants, the search and selection steps against plain-Python versions of the paper's algorithms, deletes,
updates, metadata filters, save/load, and the errors on bad input."""

import heapq

import hnswlib
import numpy as np
import pytest

from minimodels.retrieval import HNSW
from minimodels.retrieval.graph_search import greedy_descent
from minimodels.retrieval.neighbor_selection import select_neighbors

METRICS = ["l2", "cosine", "ip"]
N, DIM, N_QUERIES, K = 10_000, 64, 500, 10


def clustered(n, dim, seed, n_clusters=50, spread=0.6):
    """Gaussian clusters that overlap enough for ef to matter (hnswlib's recall@10 at ef=10 is about 0.7)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, spread, (n_clusters, dim))
    return (centers[rng.integers(0, n_clusters, n)] + rng.normal(0.0, 1.0, (n, dim))).astype(np.float32)


def distances64(data, queries, metric):
    """(Q, N) distances in float64 with hnswlib's conventions: l2 squared, ip 1 - dot, cosine 1 - cos."""
    x, q = data.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        x, q = x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        return (q**2).sum(1)[:, None] + (x**2).sum(1)[None, :] - 2 * q @ x.T
    return 1.0 - q @ x.T


def brute_force(data, queries, k, metric):
    """Independent reference: every distance in float64, a full sort."""
    d = distances64(data, queries, metric)
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(d, ids, axis=1)


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def data():
    x = clustered(N + N_QUERIES, DIM, seed=0)
    return x[:N], x[N:]


@pytest.fixture(scope="module")
def built(data):
    """metric -> (our index, hnswlib index, brute-force ids), each built once (M 16, ef_construction 200)."""
    cache = {}

    def get(metric):
        if metric not in cache:
            base, queries = data
            ours = HNSW(DIM, M=16, ef_construction=200, metric=metric, seed=0)
            ours.add(base)
            ref = hnswlib.Index(space=metric, dim=DIM)
            ref.init_index(max_elements=N, M=16, ef_construction=200, random_seed=0)
            ref.set_num_threads(1)
            ref.add_items(base)
            cache[metric] = (ours, ref, brute_force(base, queries, K, metric)[0])
        return cache[metric]

    return get


# ------------------------------------------------------------------------------------- recall and parity
@pytest.mark.slow
@pytest.mark.parametrize("metric", METRICS)
def test_recall_at_ef100_is_high_and_within_001_of_hnswlib(built, data, metric):
    ours, ref, truth = built(metric)
    queries = data[1]
    ids, _ = ours.search(queries, K, ef=100)
    ref.set_ef(100)
    ref_ids, _ = ref.knn_query(queries, k=K)
    ours_recall, ref_recall = recall(ids, truth), recall(ref_ids, truth)
    assert ours_recall >= 0.95, (metric, ours_recall)
    assert abs(ours_recall - ref_recall) <= 0.01, (metric, ours_recall, ref_recall)


@pytest.mark.slow
@pytest.mark.parametrize("metric", METRICS)
def test_recall_rises_with_ef_like_hnswlib(built, data, metric):
    # at ef = 10 the search is far from exact, so a worse graph shows; the two curves must stay close
    ours, ref, truth = built(metric)
    queries = data[1]
    for ef in (10, 30):
        ref.set_ef(ef)
        ours_recall = recall(ours.search(queries, K, ef=ef)[0], truth)
        ref_recall = recall(ref.knn_query(queries, k=K)[0], truth)
        assert ours_recall >= ref_recall - 0.03, (metric, ef, ours_recall, ref_recall)
    assert recall(ours.search(queries, K, ef=10)[0], truth) < recall(ours.search(queries, K, ef=100)[0], truth)


@pytest.mark.slow
@pytest.mark.parametrize("metric", METRICS)
def test_distances_follow_hnswlib_conventions(built, data, metric):
    ours, ref, _ = built(metric)
    base, queries = data
    ids, dists = ours.search(queries[:50], K, ef=100)
    assert (np.diff(dists, axis=1) >= 0).all()  # closest first
    # recompute every returned distance independently
    expected = np.array([distances64(base[row], queries[i:i + 1], metric)[0] for i, row in enumerate(ids)])
    np.testing.assert_allclose(dists, expected, rtol=1e-4, atol=1e-4)
    # and where hnswlib returns the same nearest item, it reports the same distance
    ref.set_ef(100)
    ref_ids, ref_d = ref.knn_query(queries[:50], k=1)
    same = ref_ids[:, 0].astype(np.int64) == ids[:, 0]
    assert same.mean() > 0.9
    np.testing.assert_allclose(dists[same, 0], ref_d[same, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_graph_invariants(built):
    index = built("l2")[0]
    levels = index.levels
    # levels drawn with mL = 1 / ln M: P(level >= l) = M^-l (625 of 10k on layer 1, sd about 24)
    assert abs((levels >= 1).sum() - N / 16) < 5 * np.sqrt(N / 16)
    assert abs((levels >= 2).sum() - N / 256) < 5 * np.sqrt(N / 256) + 1
    assert index.max_level == levels.max() and levels[index.entry_point] == levels.max()
    degrees0 = np.array([len(index.neighbors(node, 0)) for node in range(N)])
    assert degrees0.max() <= 32 and degrees0.min() >= 1  # 2M on layer 0
    upper = np.flatnonzero(levels >= 1)
    assert max(len(index.neighbors(node, 1)) for node in upper) <= 16  # M above
    for node in range(0, N, 97):  # links point to real nodes on the same layer, never to the node itself
        for layer in range(levels[node] + 1):
            nb = index.neighbors(node, layer)
            assert node not in nb and len(set(nb.tolist())) == len(nb) and (levels[nb] >= layer).all()
    # every node is reachable on layer 0 from the entry point
    seen, frontier = {index.entry_point}, [index.entry_point]
    while frontier:
        frontier = [nb for node in frontier for nb in index.neighbors(node, 0).tolist() if nb not in seen]
        seen.update(frontier)
    assert len(seen) == N


# ----------------------------------------------------------------- the algorithms against plain Python
def heap_beam_search(vectors, neighbors, q, entry, ef, dist):
    """Algorithm 2 of Malkov & Yashunin (2016) as written: a candidate min-heap and a result max-heap."""
    d0 = dist(vectors[[entry]], q)[0]
    candidates, results, visited = [(d0, entry)], [(-d0, entry)], {entry}
    while candidates:
        d, node = heapq.heappop(candidates)
        if d > -results[0][0]:
            break
        fresh = [nb for nb in neighbors(node) if nb not in visited]
        visited.update(fresh)
        for dn, nb in zip(dist(vectors[fresh], q) if fresh else [], fresh, strict=True):
            if len(results) < ef or dn < -results[0][0]:
                heapq.heappush(candidates, (dn, nb))
                heapq.heappush(results, (-dn, nb))
                if len(results) > ef:
                    heapq.heappop(results)
    return [node for _, node in sorted((-d, n) for d, n in results)]


def _dist(metric):
    if metric == "l2":
        return lambda x, q: np.einsum("nd,nd->n", x - q, x - q)
    return lambda x, q: 1.0 - x @ q


@pytest.fixture(scope="module")
def small():
    """3000 vectors of dim 16 with metadata, for the algorithm and CRUD tests."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    return x, rng.normal(size=(40, 16)).astype(np.float32)


@pytest.mark.parametrize("metric", METRICS)
def test_layer_search_equals_the_heap_algorithm(small, metric):
    x, queries = small
    index = HNSW(16, M=8, ef_construction=64, metric=metric)
    index.add(x)
    stored, dist = index.get_vectors(np.arange(len(x))), _dist(metric)
    for ef in (1, 8, 40):
        nodes, _ = index.search_layer(queries, entry=11, ef=ef, layer=0)
        for q, row in zip(index_prepared(queries, metric), nodes, strict=True):
            ref = heap_beam_search(stored, lambda n: index.neighbors(n, 0).tolist(), q, 11, ef, dist)
            assert row[row >= 0].tolist() == ref


def index_prepared(queries, metric):
    return queries / np.linalg.norm(queries, axis=1, keepdims=True) if metric == "cosine" else queries


def test_greedy_descent_equals_a_plain_loop(small):
    x, queries = small
    index = HNSW(16, M=8, ef_construction=32)
    index.add(x)
    layer = 1
    start = int(np.flatnonzero(index.levels >= layer)[0])
    entry = np.full(len(queries), start)
    dist = _dist("l2")
    entry_d = np.einsum("nd,nd->n", x[entry] - queries, x[entry] - queries)
    got, got_d = greedy_descent(queries, entry, entry_d, index._vectors, "l2", index._links[layer], index._rows[layer])
    for q, node, d in zip(queries, got, got_d, strict=True):
        here = start
        while True:  # move to the best neighbour while it improves
            nb = index.neighbors(here, layer)
            dn = dist(x[nb], q)
            if dn.min() >= dist(x[[here]], q)[0]:
                break
            here = int(nb[dn.argmin()])
        assert node == here and d == pytest.approx(dist(x[[here]], q)[0], rel=1e-6)


def reference_heuristic(cand, cand_d, vectors, m):
    """Algorithm 4 (no extension, no kept pruned links), one node at a time, as hnswlib writes it."""
    if len(cand) < m:
        return list(cand)
    kept = []
    for e, d_eq in zip(cand, cand_d, strict=True):
        if len(kept) >= m:
            break
        if all(((vectors[e] - vectors[r]) ** 2).sum() >= d_eq for r in kept):
            kept.append(e)
    return kept


def test_neighbor_heuristic_equals_algorithm_4():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    rows, n_cand, m = 60, 50, 6
    cand = np.full((rows, n_cand), -1)
    cand_d = np.full((rows, n_cand), np.inf, dtype=np.float32)
    for r in range(rows):
        size = [3, 6, 20, 50][r % 4]  # fewer than m (all kept), exactly m, and more
        q = rng.normal(size=8).astype(np.float32)
        ids = rng.choice(400, size, replace=False)
        d = ((vectors[ids] - q) ** 2).sum(1)
        order = np.argsort(d)
        cand[r, :size], cand_d[r, :size] = ids[order], d[order]
    got = select_neighbors(cand, cand_d, vectors, "l2", m)
    pruned = 0
    for r in range(rows):
        valid = cand[r] >= 0
        ref = reference_heuristic(cand[r][valid].tolist(), cand_d[r][valid].tolist(), vectors, m)
        assert got[r][got[r] >= 0].tolist() == ref
        pruned += len(ref) < min(m, valid.sum())
    assert pruned > 0  # the heuristic did reject candidates, so the comparison tested it


# -------------------------------------------------------------------------------------------- CRUD
def test_ids_default_in_order_of_addition_and_len(small):
    x, _ = small
    index = HNSW(16, M=8, ef_construction=32)
    assert len(index) == 0
    assert index.add(x[:5]).tolist() == [0, 1, 2, 3, 4]
    assert index.add(x[5:8], ids=[100, 50, 7]).tolist() == [100, 50, 7]
    assert index.add(x[8:10]).tolist() == [101, 102]  # defaults continue after the largest id
    assert len(index) == 10 and 50 in index and 8 not in index
    ids, d = index.search(x[6], 1)
    assert ids[0, 0] == 50 and d[0, 0] == 0


def test_delete_never_returns_deleted_items(small):
    x, queries = small
    index = HNSW(16, M=8, ef_construction=64)
    index.add(x)
    gone = np.arange(0, len(x), 3)
    index.delete(gone)
    assert len(index) == len(x) - len(gone)
    ids, _ = index.search(np.concatenate([queries, x[gone[:40]]]), 10, ef=64)
    assert not np.isin(ids, gone).any() and (ids >= 0).all()
    left = np.setdiff1d(np.arange(len(x)), gone)
    truth = left[brute_force(x[left], queries, 10, "l2")[0]]
    assert recall(ids[:len(queries)], truth) >= 0.95
    with pytest.raises(ValueError, match="not in the index"):
        index.delete([0])


def test_update_by_re_adding_an_id(small):
    x, _ = small
    index = HNSW(16, M=8, ef_construction=32)
    index.add(x[:500], metadata=[{"v": 1}] * 500)
    new = x[2000] + 0.5
    index.add(new, ids=[7], metadata=[{"v": 2}])
    assert len(index) == 500
    np.testing.assert_array_equal(index.get_vectors([7])[0], new)
    assert index.get_metadata(7) == {"v": 2}
    ids, d = index.search(new, 1)
    assert ids[0, 0] == 7 and d[0, 0] == 0
    ids, _ = index.search(x[7], 5)  # the old vector is gone: nothing returns it at distance 0
    assert ids[0, 0] != 7 and list(ids[0]).count(7) <= 1


def test_metadata_filter_graph_and_flat(small):
    x, queries = small
    index = HNSW(16, M=8, ef_construction=64)
    index.add(x, metadata=[{"color": ["red", "green", "blue"][i % 3], "n": i} for i in range(len(x))])
    green = np.arange(1, len(x), 3)
    truth = green[brute_force(x[green], queries, 10, "l2")[0]]
    for cutoff in (0, 10_000):  # 0: walk the graph keeping only green items; 10_000: scan the 1000 green ones
        index.flat_search_cutoff = cutoff
        ids, d = index.search(queries, 10, ef=64, filter=lambda m: m["color"] == "green")
        assert (ids % 3 == 1).all() and np.isfinite(d).all()
        assert recall(ids, truth) >= (0.9 if cutoff == 0 else 1.0)
    # a set of allowed ids works the same way
    ids, _ = index.search(queries, 10, filter=set(green.tolist()))
    assert np.isin(ids, green).all()


def test_filtered_search_returns_k_when_k_allowed_exist(small):
    x, queries = small
    index = HNSW(16, M=8, ef_construction=32)
    index.add(x, metadata=[{"n": i} for i in range(len(x))])
    index.flat_search_cutoff = 0  # force the graph walk even for a tiny allowed set
    allowed = {3, 333, 1234, 2999, 1500, 42, 777, 2024, 5, 2500}  # exactly k = 10, scattered
    ids, d = index.search(queries, 10, filter=lambda m: m["n"] in allowed)
    assert all(set(row.tolist()) == allowed for row in ids) and (np.diff(d, axis=1) >= 0).all()
    ids, d = index.search(queries, 10, filter={3, 333, 42})  # fewer than k allowed: padded with -1 / inf
    assert all(set(row[:3].tolist()) == {3, 333, 42} for row in ids)
    assert (ids[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()
    ids, _ = index.search(queries, 10, filter=lambda m: False)
    assert (ids == -1).all()


def test_save_load_round_trip_gives_identical_results(small, tmp_path):
    x, queries = small
    for metric in METRICS:
        index = HNSW(16, M=8, ef_construction=48, metric=metric, seed=5)
        index.add(x[:1000], metadata=[{"n": i % 7} for i in range(1000)])
        index.delete([1, 2, 3])
        index.add(x[2000], ids=[10])
        path = tmp_path / f"{metric}.hnsw"
        index.save(path)
        loaded = HNSW.load(path)
        assert len(loaded) == len(index) and loaded.config == index.config
        for kwargs in ({"ef": 40}, {"filter": lambda m: m.get("n") == 2}, {"ef": 5}):
            a, b = index.search(queries, 10, **kwargs), loaded.search(queries, 10, **kwargs)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        index.add(x[2001:2300])  # the level generator's state travels too: later inserts build the same graph
        loaded.add(x[2001:2300])
        np.testing.assert_array_equal(index.search(queries, 10)[0], loaded.search(queries, 10)[0])
        assert loaded.get_metadata(0) == {"n": 0}


def test_memory_grows_with_M(small):
    x, _ = small
    sizes = []
    for m in (4, 8, 16):
        index = HNSW(16, M=m, ef_construction=16)
        index.add(x[:500])
        sizes.append(index.memory_bytes())
    assert sizes[0] < sizes[1] < sizes[2] and sizes[0] > 500 * 16 * 4


# --------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(small, tmp_path):
    x, _ = small
    with pytest.raises(ValueError, match="metric must be one of"):
        HNSW(16, metric="hamming")
    with pytest.raises(ValueError, match="M must be an int >= 2"):
        HNSW(16, M=1)
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        HNSW(0)
    index = HNSW(16, M=8, ef_construction=16)
    with pytest.raises(ValueError, match="search on an empty index"):
        index.search(x[:1], 1)
    with pytest.raises(ValueError, match=r"vectors must have dimension 16, got shape \(3, 8\)"):
        index.add(np.zeros((3, 8)))
    bad = x[:4].copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="vectors must be finite, but row 2"):
        index.add(bad)
    with pytest.raises(ValueError, match="ids must be unique within one add call, got 4"):
        index.add(x[:3], ids=[4, 5, 4])
    with pytest.raises(ValueError, match=r"ids must hold one id per vector \(3\)"):
        index.add(x[:3], ids=[1, 2])
    with pytest.raises(ValueError, match=r"ids must be in \[0, 2\*\*63\), got -3"):
        index.add(x[:1], ids=[-3])
    with pytest.raises(TypeError, match="ids must be integers"):
        index.add(x[:2], ids=[0.5, 1.5])
    with pytest.raises(ValueError, match="metadata must be None or a sequence of 2"):
        index.add(x[:2], metadata=[{}])
    assert len(index) == 0  # nothing was half-inserted
    index.add(x[:100])
    with pytest.raises(ValueError, match=r"queries must have dimension 16, got shape \(2, 15\)"):
        index.search(np.zeros((2, 15)), 3)
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        index.search(x[:2], 0)
    with pytest.raises(ValueError, match="k must be at most the number of items"):
        index.search(x[:2], 101)
    with pytest.raises(ValueError, match="ef must be an int >= 1"):
        index.search(x[:2], 3, ef=0)
    with pytest.raises(ValueError, match="queries must be finite"):
        index.search(np.full((1, 16), np.inf), 3)
    with pytest.raises(TypeError, match="filter must be None, a predicate on metadata or a collection of ids"):
        index.search(x[:2], 3, filter="red")
    with pytest.raises(ValueError, match="zero vector"):
        HNSW(16, metric="cosine").add(np.zeros((1, 16)))
    with pytest.raises(ValueError, match="entry must be a node on layer 0"):
        index.search_layer(x[:1], entry=500, ef=5)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an HNSW index file"):
        HNSW.load(tmp_path / "other.npz")
    index.add(x[100:101], metadata=[{"f": object()}])
    with pytest.raises(TypeError, match="metadata must be JSON-serializable"):
        index.save(tmp_path / "x.hnsw")
