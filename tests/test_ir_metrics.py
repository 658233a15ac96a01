"""evaluate() equals what sentence-transformers' InformationRetrievalEvaluator reports for the same rankings."""

import math

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from minimodels.retrieval import BM25, evaluate

METRIC_NAMES = ("accuracy", "precision", "recall", "mrr", "ndcg", "map")


def make_evaluator(queries, corpus_ids, relevant, k_values):
    ks = list(k_values)
    return InformationRetrievalEvaluator(
        queries={qid: f"query {qid}" for qid in queries}, corpus={cid: f"doc {cid}" for cid in corpus_ids},
        relevant_docs=relevant, accuracy_at_k=ks, precision_recall_at_k=ks, mrr_at_k=ks, ndcg_at_k=ks, map_at_k=ks,
        write_csv=False,
    )


def evaluator_metrics(ranked, relevant, corpus_ids, k_values):
    """The evaluator's own metric code on our rankings, given as hits with strictly descending scores."""
    evaluator = make_evaluator(list(relevant), corpus_ids, relevant, k_values)
    results = [[{"corpus_id": doc, "score": float(len(ranked[qid]) - i)} for i, doc in enumerate(ranked[qid])]
               for qid in evaluator.queries_ids]
    scores = evaluator.compute_metrics(results)
    return {f"{name}@{k}": float(scores[f"{name}@k"][k]) for name in METRIC_NAMES for k in k_values}


def random_case(seed, n_queries=30, n_docs=40, int_ids=False):
    rng = np.random.default_rng(seed)
    corpus_ids = [i if int_ids else f"doc{i:03d}" for i in range(n_docs)]
    relevant, ranked = {}, {}
    for q in range(n_queries):
        qid = q if int_ids else f"q{q}"
        n_relevant = int(rng.integers(0, 7))  # 0: a query the evaluator (and evaluate) skips
        relevant[qid] = {corpus_ids[i] for i in rng.choice(n_docs, n_relevant, replace=False)}
        length = int(rng.integers(0, 16))  # rankings shorter than k, and empty ones
        ranked[qid] = [corpus_ids[i] for i in rng.permutation(n_docs)[:length]]
        if relevant[qid] and rng.random() < 0.3:  # often put a relevant document near the top
            doc = sorted(relevant[qid], key=str)[0]
            ranked[qid] = [doc] + [d for d in ranked[qid] if d != doc]
    return ranked, relevant, corpus_ids


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k_values", [(1, 3, 5, 10), (2, 20), (1,)])
def test_matches_information_retrieval_evaluator(seed, k_values):
    ranked, relevant, corpus_ids = random_case(seed, int_ids=seed % 2 == 1)
    ours = evaluate(ranked, relevant, k_values=k_values)
    expected = evaluator_metrics(ranked, relevant, corpus_ids, k_values)
    assert list(ours) == [f"{name}@{k}" for name in METRIC_NAMES for k in sorted(k_values)]
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert 0 < ours[f"ndcg@{max(k_values)}"] < 1  # a case where the metrics are neither trivial nor perfect


def test_hand_computed_example():
    """One query: ranking d3, d1, d7 with relevant {d1, d9}: the first hit is at rank 2."""
    got = evaluate({"q": ["d3", "d1", "d7"]}, {"q": {"d1", "d9"}}, k_values=(1, 3))
    dcg, ideal = 1 / math.log2(3), 1 + 1 / math.log2(3)
    expected = {"accuracy@1": 0.0, "accuracy@3": 1.0, "precision@1": 0.0, "precision@3": 1 / 3,
                "recall@1": 0.0, "recall@3": 0.5, "mrr@1": 0.0, "mrr@3": 0.5, "ndcg@1": 0.0, "ndcg@3": dcg / ideal,
                "map@1": 0.0, "map@3": (1 / 2) / 2}
    assert got == pytest.approx(expected, rel=1e-15, abs=0)


class ScoresAsModel:
    """Stands in for a SentenceTransformer: 'embeddings' are row indices, similarity reads a fixed score matrix."""

    similarity_fn_name = "bm25"

    def __init__(self, query_texts, doc_texts, scores):
        self.query_row = {text: i for i, text in enumerate(query_texts)}
        self.doc_row = {text: i for i, text in enumerate(doc_texts)}
        self.scores = torch.as_tensor(scores, dtype=torch.float64)  # (Q, N)
        self.model_card_data = type("Card", (), {"set_evaluation_metrics": lambda *args: None})()

    def encode_query(self, texts, **kwargs):
        return torch.tensor([self.query_row[t] for t in texts])

    def encode_document(self, texts, **kwargs):
        return torch.tensor([self.doc_row[t] for t in texts])

    def similarity(self, query_rows, doc_rows):
        return self.scores[query_rows][:, doc_rows]


def test_bm25_rankings_through_the_whole_evaluator():
    """The evaluator ranks BM25's score matrix itself (top-k, ties by corpus id); evaluate() gets our top_k."""
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(30)]
    corpus = [list(rng.choice(words, rng.integers(3, 12))) for _ in range(60)]
    queries = [list(rng.choice(words, rng.integers(1, 4))) for _ in range(12)]
    doc_ids = [f"d{i:02d}" for i in range(len(corpus))]  # index order is corpus-id order: same tie-break
    query_ids = [f"q{i}" for i in range(len(queries))]
    index = BM25(corpus)
    scores = index.score_queries(queries)  # (Q, N)
    relevant = {qid: {doc_ids[i] for i in rng.choice(len(corpus), rng.integers(1, 5), replace=False)}
                for qid in query_ids}
    k_values = (1, 3, 5, 10)
    ranked = {qid: [doc_ids[i] for i in index.top_k(query, max(k_values))[0]]
              for qid, query in zip(query_ids, queries, strict=True)}

    evaluator = make_evaluator(query_ids, doc_ids, relevant, k_values)
    model = ScoresAsModel(evaluator.queries, evaluator.corpus, scores)
    reported = evaluator(model)
    expected = {f"{name}@{k}": reported[f"bm25_{name}@{k}"] for name in METRIC_NAMES for k in k_values}
    assert evaluate(ranked, relevant, k_values) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert 0 < expected["recall@10"] < 1


def test_queries_without_relevant_documents_are_skipped():
    ranked = {"a": ["x", "y"], "b": ["y"]}
    assert evaluate(ranked, {"a": {"y"}, "b": set()}, (1, 2)) == evaluate({"a": ["x", "y"]}, {"a": {"y"}}, (1, 2))


def test_bad_input_raises_clear_errors():
    relevant = {"q1": {"d1"}, "q2": {"d2"}}
    with pytest.raises(ValueError, match=r"ranked has query ids missing from relevant: \['q9'\]"):
        evaluate({"q1": ["d1"], "q2": [], "q9": ["d1"]}, relevant)
    with pytest.raises(ValueError, match=r"no ranking for query ids \['q2'\]"):
        evaluate({"q1": ["d1"]}, relevant)
    with pytest.raises(ValueError, match="k_values must all be >= 1, got 0"):
        evaluate({"q1": ["d1"], "q2": []}, relevant, k_values=(0, 1))
    with pytest.raises(ValueError, match="k_values is empty"):
        evaluate({"q1": ["d1"], "q2": []}, relevant, k_values=())
    with pytest.raises(TypeError, match="k_values must be a sequence of ints, got int"):
        evaluate({"q1": ["d1"], "q2": []}, relevant, k_values=5)
    with pytest.raises(TypeError, match="k_values must hold ints"):
        evaluate({"q1": ["d1"], "q2": []}, relevant, k_values=(1.5,))
    with pytest.raises(ValueError, match=r"ranked\['q1'\] lists document 'd1' more than once"):
        evaluate({"q1": ["d1", "d3", "d1"], "q2": []}, relevant)
    with pytest.raises(TypeError, match=r"ranked\['q1'\] must be a list of document ids, got str"):
        evaluate({"q1": "d1", "q2": []}, relevant)
    with pytest.raises(ValueError, match="no query with a relevant document"):
        evaluate({"q1": ["d1"]}, {"q1": set()})
    with pytest.raises(TypeError, match="relevant must be a dict keyed by query id, got list"):
        evaluate({"q1": ["d1"]}, [{"d1"}])
