"""BM25 on 10,000 documents of the course text: minimodels' sparse-matrix index against rank_bm25.BM25Okapi.

    PYTHONPATH=. python benchmarks/cpu/bench_bm25.py

The documents are paragraphs of CPython's help topics (`pydoc_data.topics`) followed by paragraphs of the
docstrings of the standard library (top-level modules first, read with `ast`, nothing imported or downloaded),
tokenized with `simple_tokenize`. The queries are a few words drawn from random documents. Prints, all
measured in this run: the largest score difference to rank_bm25, and the speed ratios of indexing, of scoring
the queries one by one (`get_scores`), in one batch (`score_queries`), and of indexing plus all queries.
Each timed index gets freshly tokenized strings, so neither side profits from hashes the other computed.
"""

from __future__ import annotations

import ast
import sysconfig
import time
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from minimodels.retrieval import BM25, simple_tokenize

N_DOCS, N_QUERIES, REPEATS, SEED = 10_000, 100, 3, 0


def course_paragraphs(n_docs: int = N_DOCS) -> list[str]:
    """The first n_docs paragraphs (of at least 5 words) of the help topics, then of stdlib docstrings."""
    from pydoc_data.topics import topics

    texts = [p for key in sorted(topics) for p in topics[key].split("\n\n") if len(p.split()) >= 5]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [p for p in stdlib.rglob("*.py") if not {"site-packages", "test", "tests"} & set(p.parts)]
    for path in sorted(sources, key=lambda p: (len(p.parts), p)):  # top-level modules first
        if len(texts) >= n_docs:
            break
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                texts.extend(p for p in doc.split("\n\n") if len(p.split()) >= 5)
    if len(texts) < n_docs:
        raise RuntimeError(f"found only {len(texts)} paragraphs in the course text, wanted {n_docs}")
    return texts[:n_docs]


def sample_queries(corpus: list[list[str]], n: int, seed: int) -> list[list[str]]:
    """2 to 6 words of a random document each (so most queries have matches, with common and rare words)."""
    rng = np.random.default_rng(seed)
    docs = [d for d in corpus if len(d) >= 6]
    return [list(rng.choice(docs[i], rng.integers(2, 7), replace=False)) for i in rng.integers(0, len(docs), n)]


def best_seconds(run, make_input=None, repeats: int = REPEATS):
    """Fastest wall-clock seconds of `run(make_input())` over repeats (the input is made outside the timer)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        arg = make_input() if make_input else None
        start = time.perf_counter()
        out = run(arg) if make_input else run()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> dict:
    texts = course_paragraphs()
    tokenize_all = lambda: [simple_tokenize(t) for t in texts]  # noqa: E731  fresh str objects each call
    corpus = tokenize_all()
    queries = sample_queries(corpus, N_QUERIES, SEED)
    n_tokens = sum(map(len, corpus))
    print(f"BM25 on {len(corpus)} documents ({n_tokens} tokens), {len(queries)} queries of "
          f"{np.mean([len(q) for q in queries]):.1f} words on average; best of {REPEATS} runs each")

    t_index_ref, reference = best_seconds(BM25Okapi, tokenize_all)
    t_index, index = best_seconds(BM25, tokenize_all)
    t_score_ref, expected = best_seconds(lambda: np.stack([reference.get_scores(q) for q in queries]))
    t_score, scores = best_seconds(lambda: np.stack([index.get_scores(q) for q in queries]))
    t_batch, batch = best_seconds(lambda: index.score_queries(queries))

    max_diff = float(max(np.abs(scores - expected).max(), np.abs(batch - expected).max()))
    same_top10 = np.mean([(np.argsort(-e, kind="stable")[:10] == index.top_k(q, 10)[0]).all()
                          for e, q in zip(expected, queries, strict=True)])
    figures = {
        "max_abs_diff": max_diff,
        "index_speedup": t_index_ref / t_index,
        "score_speedup": t_score_ref / t_score,
        "batch_speedup": t_score_ref / t_batch,
        "total_speedup": (t_index_ref + t_score_ref) / (t_index + t_score),
    }
    rows = [("index", t_index_ref, t_index), ("score, one query at a time", t_score_ref, t_score),
            ("score, one batch", t_score_ref, t_batch),
            ("index + all queries", t_index_ref + t_score_ref, t_index + t_score)]
    print(f"{'':28s} {'rank_bm25 s':>12s} {'minimodels s':>13s} {'speedup':>8s}")
    for name, ref_s, our_s in rows:
        print(f"{name:28s} {ref_s:12.4f} {our_s:13.4f} {ref_s / our_s:7.1f}x")
    print(f"max |score - rank_bm25 score| = {max_diff:.2e}; same top-10 for {same_top10:.0%} of queries")
    if max_diff > 1e-9:
        raise AssertionError(f"scores differ from rank_bm25 by {max_diff:.2e} > 1e-9")
    return figures


if __name__ == "__main__":
    main()
