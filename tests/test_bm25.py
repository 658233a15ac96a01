"""BM25 equals rank_bm25.BM25Okapi (edge cases included), the Lucene variant equals a loop written from its formula."""

import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from minimodels.retrieval import BM25, ENGLISH_STOP_WORDS, simple_tokenize

ATOL = 1e-9

# Hand-made corpus hitting every edge case: "the" is in 5 of 6 documents (negative idf, floored), "cat" in
# exactly 3 of 6 (idf exactly zero, which rank_bm25 does not floor), two empty documents, a repeated term.
EDGE_CORPUS = [
    ["the", "cat", "sat", "on", "the", "mat"],
    [],
    ["the", "dog", "chased", "the", "cat", "the", "end"],
    ["the", "cat"],
    [],
    ["the", "the", "the", "bird"],
]
EDGE_QUERIES = [
    ["the"], ["cat"], ["the", "the", "cat"], ["unicorn"], ["unicorn", "dog", "unicorn"], [],
    ["bird", "the", "bird", "dog", "mat", "sat"], ["end", "cat", "the", "cat", "end"],
]


def random_corpus(seed: int, n_docs: int = 300, vocab: int = 400) -> list[list[str]]:
    """Zipf-distributed words (so a few terms are in most documents) with some empty documents."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1)
    weights /= weights.sum()
    lengths = rng.integers(0, 40, n_docs)
    lengths[rng.random(n_docs) < 0.05] = 0
    return [[f"w{i}" for i in rng.choice(vocab, size=n, p=weights)] for n in lengths]


def random_queries(seed: int, n: int = 40, vocab: int = 400) -> list[list[str]]:
    """Queries of 1-8 terms, with repeats and terms that are in no document (ids beyond the vocabulary)."""
    rng = np.random.default_rng(seed + 1000)
    return [[f"w{i}" for i in rng.integers(0, vocab + 50, rng.integers(1, 9))] for _ in range(n)]


def assert_parity(corpus, queries, **params):
    reference, ours = BM25Okapi(corpus, **params), BM25(corpus, **params)
    empty = np.array([len(doc) == 0 for doc in corpus])
    for query in queries:
        with np.errstate(invalid="ignore"):
            expected = reference.get_scores(query)
        got = ours.get_scores(query)
        assert got.shape == expected.shape
        # rank_bm25 gives NaN (0 / 0) for an empty document when b = 1; the term is absent, so it adds 0.
        undefined = np.isnan(expected)
        assert (empty[undefined]).all() and (got[undefined] == 0).all()
        assert undefined.any() == (params.get("b") == 1.0 and empty.any() and len(query) > 0)
        np.testing.assert_allclose(got[~undefined], expected[~undefined], rtol=0, atol=ATOL, err_msg=f"query {query}")
    return reference, ours


def test_edge_corpus_matches_rank_bm25():
    reference, ours = assert_parity(EDGE_CORPUS, EDGE_QUERIES)
    assert reference.idf["cat"] == 0.0 and reference.idf["the"] > 0  # the zero stays, the negative was floored
    assert ours.avgdl == pytest.approx(reference.avgdl, abs=0)
    assert ours.average_idf == pytest.approx(reference.average_idf, abs=ATOL)
    for word, idf in reference.idf.items():
        assert ours.idf[ours.vocabulary[word]] == pytest.approx(idf, abs=ATOL), word
    np.testing.assert_array_equal(ours.get_scores(["unicorn"]), np.zeros(len(EDGE_CORPUS)))
    assert ours.get_scores(["the"])[[1, 4]].tolist() == [0.0, 0.0]  # empty documents score nothing


def test_repeated_query_term_counts_once_per_occurrence():
    ours = BM25(EDGE_CORPUS)
    np.testing.assert_allclose(ours.get_scores(["dog", "dog", "dog"]), 3 * ours.get_scores(["dog"]), rtol=1e-15)


def test_negative_average_idf_gives_negative_floor():
    """Every term in every document: all idfs negative, the mean too, so epsilon * mean is a negative floor."""
    corpus = [["a", "b"], ["b", "a", "a"], ["a", "b", "b"]]
    reference, ours = assert_parity(corpus, [["a"], ["b", "a", "b"]])
    assert ours.average_idf < 0 and (ours.get_scores(["a"]) < 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", [{}, {"k1": 0.9, "b": 0.4, "epsilon": 0.1}, {"k1": 2.0, "b": 1.0},
                                    {"k1": 1.2, "b": 0.0, "epsilon": 0.0}])
def test_random_corpus_matches_rank_bm25(seed, params):
    corpus = random_corpus(seed)
    n_docs = len(corpus)
    doc_freq = {}
    for doc in corpus:
        for word in set(doc):
            doc_freq[word] = doc_freq.get(word, 0) + 1
    assert max(doc_freq.values()) > n_docs / 2  # the floor is exercised
    assert any(len(doc) == 0 for doc in corpus)
    assert_parity(corpus, random_queries(seed), **params)


def test_single_document_corpus():
    assert_parity([["only", "one", "one", "document"]], [["one"], ["document", "only"], ["none"]])


def test_course_text_matches_rank_bm25():
    from pydoc_data.topics import topics

    paragraphs = [p for key in sorted(topics)[:15] for p in topics[key].split("\n\n") if p.strip()]
    corpus = [simple_tokenize(p) for p in paragraphs]
    queries = [simple_tokenize(q) for q in ("how does the with statement call __enter__",
                                            "the for loop and the else clause", "raise an exception", "lambda")]
    assert len(corpus) > 100
    assert_parity(corpus, queries)


def test_score_queries_equals_get_scores_one_by_one():
    corpus, queries = random_corpus(3), random_queries(3)
    reference, ours = BM25Okapi(corpus), BM25(corpus)
    batch = ours.score_queries(queries)
    assert batch.shape == (len(queries), len(corpus))
    expected = np.stack([reference.get_scores(q) for q in queries])
    np.testing.assert_allclose(batch, expected, rtol=0, atol=ATOL)
    assert ours.score_queries([]).shape == (0, len(corpus))


def lucene_reference(corpus, query, k1, b):
    """Lucene's BM25 (since Lucene 8): idf = ln(1 + (N - n + 0.5)/(n + 0.5)), tf part tf / (tf + k1 * norm)."""
    n_docs = len(corpus)
    avgdl = sum(map(len, corpus)) / n_docs
    doc_freq = {term: sum(term in d for d in corpus) for term in query}
    scores = []
    for doc in corpus:
        score = 0.0
        for term in query:
            n = doc_freq[term]
            tf = doc.count(term)
            if n == 0 or tf == 0:
                continue
            idf = math.log(1 + (n_docs - n + 0.5) / (n + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return np.array(scores)


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (0.9, 0.4), (1.2, 1.0)])
def test_lucene_variant_matches_its_formula(k1, b):
    corpus = random_corpus(4, n_docs=80, vocab=60)
    ours = BM25(corpus, k1=k1, b=b, variant="lucene")
    assert (ours.idf > 0).all()
    for query in random_queries(4, n=15, vocab=60) + EDGE_QUERIES:
        np.testing.assert_allclose(ours.get_scores(query), lucene_reference(corpus, query, k1, b), rtol=0, atol=ATOL)


def test_lucene_and_okapi_differ_only_where_expected():
    okapi, lucene = BM25(EDGE_CORPUS), BM25(EDGE_CORPUS, variant="lucene")
    rare = okapi.vocabulary["bird"]  # in 1 of 6 documents: both idfs positive, Lucene's is larger by its +1
    assert lucene.idf[rare] > okapi.idf[rare] > 0


def top_k_reference(scores, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return np.array(order), np.asarray(scores)[order]


@pytest.mark.parametrize("k", [1, 3, 7, 300, 1000])
def test_top_k_is_descending_with_ties_by_index(k):
    corpus = random_corpus(5)
    reference, ours = BM25Okapi(corpus), BM25(corpus)
    for query in random_queries(5, n=10) + [["nothing_matches"]]:
        indices, scores = ours.top_k(query, k)
        expected_indices, expected_scores = top_k_reference(reference.get_scores(query), k)
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=ATOL)
    assert len(ours.top_k(["w1"], 1000)[0]) == len(corpus)  # k beyond N returns every document
    np.testing.assert_array_equal(ours.top_k(["nothing_matches"], 4)[0], [0, 1, 2, 3])  # all tied at zero


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="corpus_tokens is empty"):
        BM25([])
    with pytest.raises(ValueError, match="no tokens"):
        BM25([[], []])
    with pytest.raises(TypeError, match="corpus_tokens must be a list of token lists, got str"):
        BM25("a corpus")
    with pytest.raises(TypeError, match=r"corpus_tokens\[1\] must be a list of tokens, got a str"):
        BM25([["ok"], "not tokenized"])
    with pytest.raises(TypeError, match="str tokens"):
        BM25([["ok", 3]])
    with pytest.raises(TypeError, match="str tokens"):
        BM25([["ok", ["nested"]]])
    with pytest.raises(ValueError, match="k1 must be >= 0.0, got -1"):
        BM25(EDGE_CORPUS, k1=-1)
    with pytest.raises(ValueError, match=r"b must be in \[0.0, 1.0\], got 1.5"):
        BM25(EDGE_CORPUS, b=1.5)
    with pytest.raises(ValueError, match="epsilon must be >= 0.0, got nan"):
        BM25(EDGE_CORPUS, epsilon=float("nan"))
    with pytest.raises(TypeError, match="k1 must be a real number, got str"):
        BM25(EDGE_CORPUS, k1="1.5")
    with pytest.raises(ValueError, match="variant must be one of"):
        BM25(EDGE_CORPUS, variant="bm25+")
    index = BM25(EDGE_CORPUS)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        index.top_k(["cat"], 0)
    with pytest.raises(TypeError, match="k must be an int, got float"):
        index.top_k(["cat"], 2.0)
    with pytest.raises(TypeError, match="query_tokens must be a list of tokens, got a str"):
        index.get_scores("the cat")
    with pytest.raises(TypeError, match=r"queries\[1\] must hold str tokens"):
        index.score_queries([["cat"], ["cat", None]])


def test_simple_tokenize():
    text = "The BM25 score, EXPLAINED: call __init__() twice -- it's 2x!"
    assert simple_tokenize(text) == ["the", "bm25", "score", "explained", "call", "__init__", "twice", "it", "s",
                                     "2x"]
    assert simple_tokenize(text, "english") == ["bm25", "score", "explained", "call", "__init__", "twice", "s",
                                                "2x"]
    assert simple_tokenize(text, {"Score", "twice"}) == ["the", "bm25", "explained", "call", "__init__", "it", "s",
                                                         "2x"]
    assert simple_tokenize("") == [] and simple_tokenize("... !!") == []
    assert {"the", "and", "of", "is"} <= ENGLISH_STOP_WORDS and "retrieval" not in ENGLISH_STOP_WORDS
    with pytest.raises(ValueError, match="stopwords must be None, 'english' or a set of words, got the string"):
        simple_tokenize(text, "french")
    with pytest.raises(TypeError, match="stopwords must all be strings"):
        simple_tokenize(text, {1, 2})
    with pytest.raises(TypeError, match="text must be a str, got list"):
        simple_tokenize(["the", "cat"])
