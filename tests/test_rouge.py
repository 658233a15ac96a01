"""ROUGE equals rouge-score 0.1.2's RougeScorer (rouge1/2/L/Lsum, with and without the stemmer) on a varied set;
unknown types and bad input raise clear errors."""

import random

import pytest
from nltk.stem import porter
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_score_tokenize

from minimodels.evaluation import Score, rouge, rouge_tokenize
from minimodels.evaluation.rouge import lcs_indices

TOL = 1e-6
TYPES = ("rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum")

# (target, prediction): each case exercises one rule of the tokenizer, the stemmer or a score.
CASES = [
    ("The quick brown fox jumps over the lazy dog.", "The quick brown dog jumps on the log."),
    ("Hello, world! How are you?", "hello world how are you"),  # punctuation, case
    ("It costs $3.14, or 1,000 in total.", "it costs 3 14 or 1000 in total"),  # numbers
    ("I don't think it's John's car.", "I do not think it is Johns car"),  # contractions
    ("the the the cat", "the the the the the the"),  # repeated words, clipping
    ("A target with words.", ""),  # empty prediction
    ("", "a prediction with words"),  # empty target
    ("", ""),
    ("!!! ... ???", "---"),  # punctuation only: no tokens
    ("completely unrelated words", "nothing in common"),  # no match
    ("Café naïve Grüße 東京 😀 ǅungla KELVIN \u212a", "cafe naive grusse kelvin k"),  # Unicode
    ("running runs ran easily; the cats were caring", "run running ran easy the cat was cared"),  # stemming
    ("this was his bus", "thi wa hi bu"),  # <= 3 characters are not stemmed, longer ones are
    ("First sentence here.\nSecond sentence there.\nThird one.", "Second sentence here.\nFirst one there."),
    ("a b c a b c\nb c a\n\n", "c a b\na b c b\n"),  # Lsum: repeated tokens across sentences, blank lines
    ("one\n   \ntwo three", "two\n\nthree one"),  # whitespace-only lines are kept, blank ones dropped
    ("a b a b a b", "b a b a"),  # many LCSs: the tie rule decides the union
]


def _random_pair(rng: random.Random) -> tuple[str, str]:
    """Multi-line texts over a tiny vocabulary, so that LCS ties and repeated tokens are common."""
    words = ["a", "b", "c", "d", "the", "runs", "running", "cats", "Cat.", "x,y", "Ü"]

    def text() -> str:
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 7))) for _ in range(rng.randint(1, 4))]
        return "\n".join(lines)

    return text(), text()


def _long_text(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "deltas", "epsilon.", "7", "x-1", "\n"]
    return " ".join(rng.choice(words) for _ in range(n_words))


def _assert_equal(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert isinstance(ours[key], Score)
        for field in ("precision", "recall", "fmeasure"):
            assert abs(getattr(ours[key], field) - getattr(theirs[key], field)) <= TOL, (key, field)


@pytest.mark.parametrize("use_stemmer", [False, True])
@pytest.mark.parametrize("target, prediction", CASES)
def test_equals_rouge_score(target, prediction, use_stemmer):
    expected = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=use_stemmer).score(target, prediction)
    _assert_equal(rouge(target, prediction, TYPES, use_stemmer=use_stemmer), expected)


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_random_texts_equal_rouge_score(use_stemmer):
    rng = random.Random(0)
    scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=use_stemmer)
    n_partial = 0
    for _ in range(300):
        target, prediction = _random_pair(rng)
        ours = rouge(target, prediction, TYPES, use_stemmer=use_stemmer)
        _assert_equal(ours, scorer.score(target, prediction))
        n_partial += 0 < ours["rougeLsum"].fmeasure < 1
    assert n_partial > 100  # the random set really exercises partial overlaps


def test_very_long_texts_equal_rouge_score():
    target, prediction = _long_text(0, 800), _long_text(1, 700)
    expected = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=True).score(target, prediction)
    assert 0 < expected["rougeLsum"].fmeasure < 1
    _assert_equal(rouge(target, prediction, TYPES, use_stemmer=True), expected)


def test_default_types_and_single_type():
    target, prediction = CASES[0]
    default = rouge(target, prediction)
    assert tuple(default) == ("rouge1", "rouge2", "rougeL", "rougeLsum")
    expected = rouge_scorer.RougeScorer(["rougeLsum"]).score(target, prediction)
    _assert_equal(rouge(target, prediction, ["rougeLsum"]), expected)


def test_tokenizer_equals_rouge_score():
    stemmer = porter.PorterStemmer()
    for target, prediction in CASES:
        for text in (target, prediction):
            assert rouge_tokenize(text) == rouge_score_tokenize.tokenize(text, None)
            assert rouge_tokenize(text, use_stemmer=True) == rouge_score_tokenize.tokenize(text, stemmer)


def test_hand_computed_scores():
    # target tokens: the cat sat on the mat (6); prediction: the cat on the mat (5)
    scores = rouge("The cat sat on the mat", "the cat on the mat")
    assert scores["rouge1"] == pytest.approx(Score(1.0, 5 / 6, 2 * (5 / 6) / (1 + 5 / 6)))
    # bigrams: target {the cat, cat sat, sat on, on the, the mat}; prediction {the cat, cat on, on the, the mat}
    assert scores["rouge2"].precision == pytest.approx(3 / 4) and scores["rouge2"].recall == pytest.approx(3 / 5)
    assert scores["rougeL"].precision == pytest.approx(1.0) and scores["rougeL"].recall == pytest.approx(5 / 6)


def test_lcs_tie_rule():
    # "a b" vs "b a": two LCSs of length 1. Walking back from (2, 2): "b" != "a" and both neighbours hold 1,
    # a tie, so the walk drops the first sequence's "b" and then matches "a": index 0.
    assert lcs_indices(["a", "b"], ["b", "a"]) == [0]
    assert lcs_indices(["a", "b", "c"], ["a", "c", "b"]) == [0, 1]


def test_bad_input():
    with pytest.raises(ValueError, match="unknown ROUGE type 'rougeX'"):
        rouge("a", "b", ["rouge1", "rougeX"])
    for bad in ("rouge0", "rouge10", "rougeLSum", "rougel"):
        with pytest.raises(ValueError, match=f"unknown ROUGE type '{bad}'"):
            rouge("a", "b", [bad])
    with pytest.raises(TypeError, match="types must be a list of ROUGE type names"):
        rouge("a", "b", "rouge1")
    with pytest.raises(ValueError, match="types must name at least one ROUGE type"):
        rouge("a", "b", [])
    with pytest.raises(TypeError, match="target must be a string, got list"):
        rouge(["a"], "b")
    with pytest.raises(TypeError, match="prediction must be a string, got NoneType"):
        rouge("a", None)
    with pytest.raises(TypeError, match="use_stemmer must be a bool"):
        rouge("a", "b", use_stemmer="yes")
