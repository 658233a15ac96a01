"""ROUGE (Lin, 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", ACL workshop), as Google's
rouge-score computes it.

    rougeN     n-gram overlap: matches = sum over n-grams of min(count in target, count in prediction)
               precision = matches / prediction n-grams, recall = matches / target n-grams
    rougeL     longest common subsequence (LCS) of the two token lists: precision = LCS / prediction tokens,
               recall = LCS / target tokens
    rougeLsum  summary-level LCS: texts split into sentences on newlines; for each target sentence, the union
               of its LCS with every prediction sentence counts as hits (each token counted at most as often as
               it occurs in both texts)
    fmeasure   harmonic mean 2PR / (P + R)

Tokens: lowercase, every run of characters outside [a-z0-9] is a separator (so accented letters are dropped),
and with use_stemmer=True tokens longer than 3 characters go through Porter's stemmer (Porter, 1980), as
rouge-score does (it uses NLTK's PorterStemmer, and so does this file).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_TOKEN = re.compile(r"[a-z0-9]+")
_ROUGE_N = re.compile(r"rouge([1-9])")


class Score(NamedTuple):
    """Precision, recall and their harmonic mean (rouge-score's Score has the same fields in the same order)."""

    precision: float
    recall: float
    fmeasure: float


@lru_cache(maxsize=1)
def _porter():
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


@lru_cache(maxsize=2**16)
def _stem(token: str) -> str:
    return _porter().stem(token)


def rouge_tokenize(text: str, use_stemmer: bool = False) -> list[str]:
    """Lowercased [a-z0-9] runs of `text`; with use_stemmer, tokens longer than 3 characters are Porter-stemmed."""
    tokens = _TOKEN.findall(text.lower())
    if use_stemmer:
        tokens = [_stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if _TOKEN.fullmatch(t)]


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _score(hits: int, n_prediction: int, n_target: int) -> Score:
    precision, recall = hits / n_prediction, hits / n_target
    return Score(precision, recall, _fmeasure(precision, recall))


def rouge_n(target: list[str], prediction: list[str], n: int) -> Score:
    """ROUGE-N from token lists: clipped n-gram overlap (an empty side gives 0)."""
    target_ngrams = Counter(tuple(target[i:i + n]) for i in range(len(target) - n + 1))
    prediction_ngrams = Counter(tuple(prediction[i:i + n]) for i in range(len(prediction) - n + 1))
    hits = sum((target_ngrams & prediction_ngrams).values())
    return _score(hits, max(sum(prediction_ngrams.values()), 1), max(sum(target_ngrams.values()), 1))


def _lcs_table(a: Sequence[str], b: Sequence[str]) -> list[list[int]]:
    """table[i][j] = length of the LCS of a[:i] and b[:j]."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, start=1):
        row, above = table[i], table[i - 1]
        for j, y in enumerate(b, start=1):
            row[j] = above[j - 1] + 1 if x == y else max(above[j], row[j - 1])
    return table


def lcs_indices(a: Sequence[str], b: Sequence[str]) -> list[int]:
    """Indices into `a` of one longest common subsequence with `b`.

    Several LCSs can exist, and the union-LCS of rougeLsum depends on which is taken: walking back from the end,
    a matching pair is always taken, otherwise the walk drops the last token of `b` only when that keeps a
    strictly longer LCS than dropping the last token of `a` (the tie rule of ROUGE-1.5.5 and rouge-score).
    """
    table = _lcs_table(a, b)
    i, j, picked = len(a), len(b), []
    while i > 0 and j > 0:
        if a[i - 1] == b[j - 1]:
            picked.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return picked[::-1]


def rouge_l(target: list[str], prediction: list[str]) -> Score:
    """ROUGE-L from token lists: LCS length over each side's length (an empty side gives 0)."""
    if not target or not prediction:
        return Score(0.0, 0.0, 0.0)
    return _score(_lcs_table(target, prediction)[-1][-1], len(prediction), len(target))


def rouge_lsum(target_sentences: list[list[str]], prediction_sentences: list[list[str]]) -> Score:
    """Summary-level ROUGE-L from tokenized sentences: union-LCS hits, each token counted at most as often as it
    occurs in both summaries (Lin, 2004, section 3.2)."""
    n_target = sum(map(len, target_sentences))
    n_prediction = sum(map(len, prediction_sentences))
    if n_target == 0 or n_prediction == 0:
        return Score(0.0, 0.0, 0.0)
    target_left = Counter(t for s in target_sentences for t in s)
    prediction_left = Counter(t for s in prediction_sentences for t in s)
    hits = 0
    for sentence in target_sentences:
        union = sorted(set().union(*(lcs_indices(sentence, p) for p in prediction_sentences)))
        for token in (sentence[i] for i in union):
            if target_left[token] > 0 and prediction_left[token] > 0:
                hits += 1
                target_left[token] -= 1
                prediction_left[token] -= 1
    return _score(hits, n_prediction, n_target)


def _check_types(types: object) -> tuple[str, ...]:
    if isinstance(types, str) or not isinstance(types, Sequence):
        raise TypeError(f"types must be a list of ROUGE type names such as {DEFAULT_TYPES}, got {types!r}")
    if len(types) == 0:
        raise ValueError("types must name at least one ROUGE type, got an empty list")
    for t in types:
        if not isinstance(t, str) or not (t in ("rougeL", "rougeLsum") or _ROUGE_N.fullmatch(t)):
            raise ValueError(f"unknown ROUGE type {t!r}: expected 'rouge1' .. 'rouge9', 'rougeL' or 'rougeLsum'")
    return tuple(types)


def rouge(
    target: str, prediction: str, types: Sequence[str] = DEFAULT_TYPES, use_stemmer: bool = False
) -> dict[str, Score]:
    """ROUGE scores of `prediction` against `target`, one Score per type. Equal to
    rouge_score.rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer).score(target, prediction)."""
    if not isinstance(target, str):
        raise TypeError(f"target must be a string, got {type(target).__name__}")
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    if not isinstance(use_stemmer, bool):
        raise TypeError(f"use_stemmer must be a bool, got {use_stemmer!r}")
    types = _check_types(types)
    target_tokens = rouge_tokenize(target, use_stemmer)
    prediction_tokens = rouge_tokenize(prediction, use_stemmer)
    scores = {}
    for t in types:
        if t == "rougeL":
            scores[t] = rouge_l(target_tokens, prediction_tokens)
        elif t == "rougeLsum":
            scores[t] = rouge_lsum(
                [rouge_tokenize(s, use_stemmer) for s in target.split("\n") if s],
                [rouge_tokenize(s, use_stemmer) for s in prediction.split("\n") if s],
            )
        else:
            scores[t] = rouge_n(target_tokens, prediction_tokens, int(t[len("rouge"):]))
    return scores
