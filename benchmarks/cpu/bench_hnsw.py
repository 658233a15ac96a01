"""HNSW in numpy against hnswlib (C++), both on one thread, on the same clustered vectors.

    python -m benchmarks.cpu.bench_hnsw            # 10k x 64, M 16, ef_construction 200, l2
    python -m benchmarks.cpu.bench_hnsw --n 20000 --metric cosine

Prints recall@10 and query time along an ef sweep for both, then the ratios: build time, and query time
at equal recall (each curve interpolated at the same recall, linear in log time). Times are CPU seconds of
this process (time.process_time), which a shared machine disturbs less than wall time; wall is shown too.
"""

from __future__ import annotations

import argparse
import time

import hnswlib
import numpy as np

from minimodels.retrieval import HNSW, exact_knn
from minimodels.retrieval.synthetic import clustered_vectors

EFS = (10, 16, 25, 40, 64, 100, 160)


def _one_blas_thread():
    """numpy's BLAS on one thread too, when threadpoolctl is installed (it usually is, via scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1)


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def _recall(found, truth) -> float:
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth, strict=True)]))


def _time_at_recall(recalls, times, target):
    """Query time where a recall curve reaches `target` (None if it never does); log-linear interpolation."""
    recalls, times = np.maximum.accumulate(np.asarray(recalls)), np.asarray(times)
    if recalls[-1] < target:
        return None
    i = int(np.argmax(recalls >= target))
    if i == 0 or recalls[i] == recalls[i - 1]:
        return float(times[i])
    frac = (target - recalls[i - 1]) / (recalls[i] - recalls[i - 1])
    return float(np.exp(np.log(times[i - 1]) + frac * (np.log(times[i]) - np.log(times[i - 1]))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--metric", default="l2", choices=["l2", "cosine", "ip"])
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    args = parser.parse_args(argv)
    limit = _one_blas_thread()
    print(f"{args.n} x {args.dim} clustered vectors, {args.queries} queries, metric {args.metric}, M {args.M}, "
          f"ef_construction {args.ef_construction}; one thread (BLAS limited: {limit is not None})")
    x = clustered_vectors(args.n + args.queries, args.dim, seed=0)
    data, queries = x[:args.n], x[args.n:]
    truth, _ = exact_knn(data, queries, 10, args.metric)

    ours = HNSW(args.dim, M=args.M, ef_construction=args.ef_construction, metric=args.metric, seed=0)
    _, ours_build, ours_build_wall = _timed(lambda: ours.add(data))
    ref = hnswlib.Index(space=args.metric, dim=args.dim)
    ref.init_index(max_elements=args.n, M=args.M, ef_construction=args.ef_construction, random_seed=0)
    ref.set_num_threads(1)
    _, ref_build, ref_build_wall = _timed(lambda: ref.add_items(data))

    curves = {"ours": ([], []), "hnswlib": ([], [])}
    print(f"\n{'ef':>5} {'recall ours':>12} {'recall hnswlib':>15} {'ms/query ours':>14} {'ms/query hnswlib':>17}")
    for ef in EFS:
        (ids, _), t_ours, _ = _timed(lambda ef=ef: ours.search(queries, 10, ef=ef))
        ref.set_ef(ef)
        (ref_ids, _), t_ref, _ = _timed(lambda: ref.knn_query(queries, k=10))
        for name, found, t in (("ours", ids, t_ours), ("hnswlib", ref_ids, t_ref)):
            curves[name][0].append(_recall(found, truth))
            curves[name][1].append(1e3 * t / len(queries))
        print(f"{ef:>5} {curves['ours'][0][-1]:>12.4f} {curves['hnswlib'][0][-1]:>15.4f} "
              f"{curves['ours'][1][-1]:>14.4f} {curves['hnswlib'][1][-1]:>17.4f}")

    print(f"\nbuild: ours {ours_build:.2f} s, hnswlib {ref_build:.2f} s CPU "
          f"(wall {ours_build_wall:.2f} s, {ref_build_wall:.2f} s); ratio {ours_build / ref_build:.1f}x")
    i100 = EFS.index(100)
    gap = curves["ours"][0][i100] - curves["hnswlib"][0][i100]
    print(f"recall@10 at ef 100: ours {curves['ours'][0][i100]:.4f}, hnswlib {curves['hnswlib'][0][i100]:.4f}, "
          f"difference {gap:+.4f} (target: within 0.01)")
    for target in (0.90, 0.95, 0.98):
        t_ours = _time_at_recall(*curves["ours"], target)
        t_ref = _time_at_recall(*curves["hnswlib"], target)
        if t_ours is None or t_ref is None:
            print(f"query time at recall {target:.2f}: not reached by {'ours' if t_ours is None else 'hnswlib'}")
            continue
        print(f"query time at recall {target:.2f}: ours {t_ours:.4f} ms, hnswlib {t_ref:.4f} ms, "
              f"ratio {t_ours / t_ref:.1f}x (target: within 10x)")
    if limit is not None:
        limit.unregister()


if __name__ == "__main__":
    main()
