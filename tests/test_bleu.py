"""BLEU equals sacrebleu 2.6 (corpus_bleu and sentence_bleu with their defaults) on a varied set, and the 13a
tokenizer splits exactly as sacrebleu's; bad input raises clear errors."""

import random

import pytest
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from minimodels.evaluation import corpus_bleu, sentence_bleu, tokenize_13a

TOL = 1e-6

# (hypothesis, [references...]): each case exercises one rule of the tokenizer or of the score.
CASES = [
    ("The cat sat on the mat.", ["The cat is on the mat.", "There is a cat on the mat."]),  # several references
    ("Hello, world! How are you?", ["Hello world, how are you today?"]),  # punctuation
    ("It costs $3.14, or 1,000.50 in total; 5-3=2.", ["It costs $3.14 or 1,000.50 in total: 5 - 3 = 2."]),  # numbers
    ("I don't think it's John's car.", ["I do not think it is John's car."]),  # contractions
    ("the the the the the the the", ["The cat is on the mat.", "the the"]),  # repeated words, clipping
    ("", ["An empty hypothesis scores zero."]),  # empty hypothesis
    ("completely unrelated words here", ["nothing in common at all"]),  # no n-gram match
    ("Café naïve — «quotes» 東京 😀 Grüße!", ["Café naïve – \"quotes\" 東京 😀 Grüße."]),  # Unicode
    ("a well-known long-term plan (see [1]) {ok} | done ~ maybe", ["a well - known plan [1] {ok}|done~"]),  # symbols
    ("Tom &amp; Jerry &lt;3 &quot;cartoons&quot; &gt; all", ["Tom & Jerry <3 \"cartoons\" > all"]),  # entities
    ("broken hy-\nphen and\nnew lines <skipped> here  ", ["broken hyphen and new lines here"]),  # 13a pre-steps
    (".5 is a half, .25 a quarter...", ["0.5 is a half , 0.25 is a quarter ..."]),  # leading period
    ("Short.", ["This reference is much longer than the hypothesis is."]),  # brevity penalty
    ("This hypothesis is much longer than the short reference it is compared with.", ["A short one."]),
    ("one two three four", ["one two three", "one two three four five"]),  # closest-length tie -> shorter
    ("one", ["one"]),  # a unigram only: no 2-grams at all (effective order)
    ("one two", ["one two three"]),
    ("a b c d e f", ["a b x d e y"]),  # some orders with no match (exp smoothing)
    ("trailing spaces   ", ["trailing spaces"]),
    ("a line that ends in a hy-\n", ["a line that ends in a hy -"]),  # stripped before "-\n" is joined
    ("", [""]),  # empty against empty
]


def _random_corpus(seed: int, n: int) -> tuple[list[str], list[list[str]]]:
    """Sentences from a small vocabulary with punctuation and numbers, so that n-grams often match."""
    rng = random.Random(seed)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "don't", "it's", "3.5", "1,000", "5-3", "well-known",
             ",", ".", "!", "?", "(", ")", "\"", "&amp;", "Ünïcode", "東京"]

    def sentence() -> str:
        tokens = [rng.choice(words) for _ in range(rng.randint(0, 14))]
        return "".join(t if t in ",.!?)" or i == 0 else " " + t for i, t in enumerate(tokens))

    hyps = [sentence() for _ in range(n)]
    refs = [[sentence() for _ in range(n)] for _ in range(rng.randint(1, 3))]
    return hyps, refs


def _long_line(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(["alpha", "beta", "gamma", "delta,", "epsilon.", "7.25", "x-1"]) for _ in range(n_words))


def test_13a_tokens_equal_sacrebleu():
    reference = Tokenizer13a()
    lines = [h for h, _ in CASES] + [r for _, refs in CASES for r in refs] + [_long_line(0, 300)]
    for line in lines:
        assert " ".join(tokenize_13a(line)) == reference(line), line


def test_13a_examples():
    # Readable examples of the rules, written out by hand.
    assert tokenize_13a("Hello, world!") == ["Hello", ",", "world", "!"]
    assert tokenize_13a("3.14 and 1,000") == ["3.14", "and", "1,000"]
    assert tokenize_13a("don't well-known 5-3") == ["don't", "well-known", "5", "-", "3"]
    assert tokenize_13a("Tom &amp; Jerry") == ["Tom", "&", "Jerry"]


@pytest.mark.parametrize("hypothesis, references", CASES)
def test_sentence_bleu_equals_sacrebleu(hypothesis, references):
    expected = sacrebleu.sentence_bleu(hypothesis, references).score
    assert abs(sentence_bleu(hypothesis, references) - expected) <= TOL


def test_corpus_bleu_equals_sacrebleu_on_the_cases():
    n_refs = max(len(refs) for _, refs in CASES)
    hyps = [h for h, _ in CASES]
    # every stream needs one reference per sentence: repeat the last reference where a case has fewer
    streams = [[refs[min(j, len(refs) - 1)] for _, refs in CASES] for j in range(n_refs)]
    expected = sacrebleu.corpus_bleu(hyps, streams).score
    assert expected > 0
    assert abs(corpus_bleu(hyps, streams) - expected) <= TOL


@pytest.mark.parametrize("hypothesis, references", CASES)
def test_corpus_bleu_of_one_sentence_equals_sacrebleu(hypothesis, references):
    # No effective order at corpus level: a one-word corpus scores 0, as in sacrebleu.
    streams = [[r] for r in references]
    expected = sacrebleu.corpus_bleu([hypothesis], streams).score
    assert abs(corpus_bleu([hypothesis], streams) - expected) <= TOL


@pytest.mark.parametrize("seed", range(6))
def test_random_corpora_equal_sacrebleu(seed):
    hyps, refs = _random_corpus(seed, 40)
    assert abs(corpus_bleu(hyps, refs) - sacrebleu.corpus_bleu(hyps, refs).score) <= TOL
    for i, hyp in enumerate(hyps):
        sentence_refs = [stream[i] for stream in refs]
        assert abs(sentence_bleu(hyp, sentence_refs) - sacrebleu.sentence_bleu(hyp, sentence_refs).score) <= TOL


def test_very_long_lines_equal_sacrebleu():
    hyps = [_long_line(1, 3000), _long_line(2, 2000)]
    refs = [[_long_line(3, 2500), _long_line(2, 2100)]]
    expected = sacrebleu.corpus_bleu(hyps, refs).score
    assert 0 < expected < 100
    assert abs(corpus_bleu(hyps, refs) - expected) <= TOL


def test_known_values():
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(100.0)
    assert corpus_bleu(["nothing matches"], [["totally different"]]) == 0.0
    assert sentence_bleu("", ["a reference"]) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match=r"references\[1\] has 1 sentences but hypotheses has 2"):
        corpus_bleu(["a b", "c d"], [["a b", "c d"], ["a b"]])
    with pytest.raises(ValueError, match="references must hold at least one reference stream"):
        corpus_bleu(["a b"], [])
    with pytest.raises(ValueError, match="hypotheses must hold at least one sentence"):
        corpus_bleu([], [[]])
    with pytest.raises(TypeError, match="hypotheses must be a list of strings, got str"):
        corpus_bleu("a b", [["a b"]])
    with pytest.raises(TypeError, match=r"references\[0\] must be a list of strings, got str"):
        corpus_bleu(["a b"], ["a b"])
    with pytest.raises(TypeError, match=r"references\[0\]\[0\] must be a string, got NoneType"):
        corpus_bleu(["a b"], [[None]])
    with pytest.raises(TypeError, match=r"hypotheses\[1\] must be a string, got int"):
        corpus_bleu(["a", 3], [["a", "b"]])
    with pytest.raises(ValueError, match="references must hold at least one reference string"):
        sentence_bleu("a b", [])
    with pytest.raises(TypeError, match="hypothesis must be a string, got list"):
        sentence_bleu(["a b"], ["a b"])
    with pytest.raises(TypeError, match="references must be a list of strings, got str"):
        sentence_bleu("a b", "a b")
