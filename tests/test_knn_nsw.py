"""Exact kNN against a per-query loop written here, the distance conventions against hnswlib's own
brute-force index, and the single-layer NSW: recall, the greedy walk's local minimum, errors."""

import hnswlib
import numpy as np
import pytest

from minimodels.retrieval import NSW, exact_knn
from minimodels.retrieval.distances import pairwise, rowwise

METRICS = ["l2", "cosine", "ip"]


def loop_knn(data, queries, k, metric):
    """One query at a time, every distance from its definition, float64, a full stable sort."""
    x = data.astype(np.float64)
    out_ids, out_d = [], []
    for q in queries.astype(np.float64):
        if metric == "l2":
            d = ((x - q) ** 2).sum(axis=1)
        elif metric == "ip":
            d = 1.0 - x @ q
        else:
            d = 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
        order = np.argsort(d, kind="stable")[:k]
        out_ids.append(order)
        out_d.append(d[order])
    return np.array(out_ids), np.array(out_d)


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    return rng.normal(size=(700, 12)).astype(np.float32), rng.normal(size=(30, 12)).astype(np.float32)


@pytest.mark.parametrize("metric", METRICS)
def test_exact_knn_equals_a_per_query_loop(points, metric):
    data, queries = points
    for k in (1, 7, len(data)):
        ids, d = exact_knn(data, queries, k, metric)
        ref_ids, ref_d = loop_knn(data, queries, k, metric)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-5)
    assert ids.dtype == np.int64 and d.dtype == np.float32


@pytest.mark.parametrize("metric", METRICS)
def test_distance_conventions_equal_hnswlib(points, metric):
    # hnswlib's index with ef = N visits every item, so it is exact here; it normalizes for cosine itself
    # (its BFIndex does not, so it is not used)
    data, queries = points
    ref = hnswlib.Index(space=metric, dim=data.shape[1])
    ref.init_index(max_elements=len(data), M=16, ef_construction=200, random_seed=0)
    ref.add_items(data)
    ref.set_ef(len(data))
    ref_ids, ref_d = ref.knn_query(queries, k=5)
    ids, d = exact_knn(data, queries, 5, metric)
    np.testing.assert_array_equal(ids, ref_ids.astype(np.int64))
    np.testing.assert_allclose(d, ref_d, rtol=1e-4, atol=1e-4)
    # the float32 helpers the graphs use agree with it as well
    x, q = data[ids[:, 0]], queries
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(rowwise(x, q, metric), ref_d[:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.diag(pairwise(x, q, metric)), ref_d[:, 0], rtol=1e-4, atol=1e-3)


def test_exact_knn_bad_input():
    data = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 5\]"):
        exact_knn(data, data, 6)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 5\]"):
        exact_knn(data, data, 0)
    with pytest.raises(ValueError, match=r"queries must have dimension 3, got shape \(2, 4\)"):
        exact_knn(data, np.zeros((2, 4)), 1)
    with pytest.raises(ValueError, match="metric must be one of"):
        exact_knn(data, data, 1, metric="manhattan")
    with pytest.raises(TypeError, match="data must be a numeric array"):
        exact_knn([["a", "b", "c"]], data, 1)


def test_nsw_recall_and_sorted_results(points):
    data, queries = points
    nsw = NSW(12, M=8, ef_construction=32)
    assert nsw.add(data).tolist() == list(range(len(data)))
    ids, d = nsw.search(queries, 10, ef=48)
    truth, truth_d = loop_knn(data, queries, 10, "l2")
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert found >= 0.9
    assert (np.diff(d, axis=1) >= 0).all()
    np.testing.assert_allclose(d[:, 0][ids[:, 0] == truth[:, 0]], truth_d[:, 0][ids[:, 0] == truth[:, 0]], rtol=1e-5)
    # each node links to the M nearest found when it arrived (node 0 excepted), both ways
    assert all(len(nsw.links[i]) >= min(8, i) for i in range(1, len(data)))
    assert all(i in nsw.links[j] for i in range(len(data)) for j in nsw.links[i])


def test_nsw_greedy_walk_ends_in_a_local_minimum(points):
    data, queries = points
    nsw = NSW(12, M=2, ef_construction=2)  # sparse links: walks get stuck
    nsw.add(data)
    stuck = 0
    for q in queries:
        path = nsw.greedy_walk(q, start=0)
        d = ((data[path] - q) ** 2).sum(1)
        assert (np.diff(d) < 0).all()  # every step gets strictly closer
        end = path[-1]
        assert ((data[nsw.links[end]] - q) ** 2).sum(1).min() >= d[-1]  # no neighbour of the end is closer
        stuck += end != loop_knn(data, q[None], 1, "l2")[0][0, 0]
    assert stuck > 0  # some walks stop short of the true nearest neighbour


def test_nsw_bad_input():
    nsw = NSW(4)
    with pytest.raises(ValueError, match="search on an empty NSW"):
        nsw.search(np.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match="M must be an int >= 1"):
        NSW(4, M=0)
    with pytest.raises(ValueError, match=r"vectors must have dimension 4, got shape \(2, 3\)"):
        nsw.add(np.zeros((2, 3)))
    nsw.add(np.eye(4))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 4\]"):
        nsw.search(np.zeros((1, 4)), 5)
    with pytest.raises(ValueError, match=r"start must be a node in \[0, 4\)"):
        nsw.greedy_walk(np.zeros(4), start=9)
