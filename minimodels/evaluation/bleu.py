"""BLEU (Papineni et al., 2002, ACL, "BLEU: a Method for Automatic Evaluation of Machine Translation"),
computed the way sacrebleu does (Post, 2018, "A Call for Clarity in Reporting BLEU Scores", arXiv:1804.08771).

    BLEU = BP * exp(mean over n = 1..4 of log p_n)                          (0-100 scale)
    p_n  = clipped n-gram matches / hypothesis n-grams, summed over the corpus
    BP   = 1 if c >= r else exp(1 - r / c)     c = hypothesis tokens, r = closest reference lengths

Tokens come from the "13a" tokenizer of WMT's mteval-v13a.pl. A hypothesis n-gram is matched at most as many
times as it occurs in the reference that has the most of it ("clipping"). For each sentence the reference
length r is the one closest to the hypothesis length (the shorter on a tie). Orders with no match are
smoothed by the "exp" method (Chen and Cherry, 2014, WMT, method 3; NIST's mteval): the k-th such order
gets precision 1 / (2^k * total). sentence_bleu also uses the "effective order": orders with no n-gram at
all in the hypothesis are left out of the mean, so that a short sentence is not scored 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

MAX_ORDER = 4

# mteval-v13a's language-independent step: unescape the few XML entities it knows (in this order).
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
# Every ASCII symbol except the apostrophe, comma, hyphen and period is a token of its own.
_ALWAYS_SPLIT = re.compile("([" + re.escape("!\"#$%&()*+/:;<=>?@[\\]^_`{|}~") + "])")
_PERIOD_COMMA_AFTER_NON_DIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NON_DIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def tokenize_13a(line: str) -> list[str]:
    """Split a detokenized line into BLEU tokens as mteval-v13a does.

    Punctuation is split off, except '.' and ',' between digits (3.14, 1,000) and '-' not after a digit
    (well-known, but 5 - 3); apostrophes stay inside words (don't).
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES:
        line = line.replace(entity, char)
    line = f" {line} "  # the padding lets a leading '.' or ',' see a non-digit before it
    line = _ALWAYS_SPLIT.sub(r" \1 ", line)
    line = _PERIOD_COMMA_AFTER_NON_DIGIT.sub(r"\1 \2 ", line)
    line = _PERIOD_COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", line)
    line = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", line)
    return line.split()


def ngram_counts(tokens: Sequence[str], max_order: int = MAX_ORDER) -> Counter:
    """Counts of every n-gram (as a tuple of tokens) of order 1 .. max_order."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class BleuStats:
    """The sufficient statistics of BLEU; corpus statistics are sums of sentence statistics."""

    hyp_len: int
    ref_len: int
    matches: tuple[int, ...]  # clipped matches of order 1 .. MAX_ORDER
    totals: tuple[int, ...]  # hypothesis n-grams of order 1 .. MAX_ORDER

    def __add__(self, other: BleuStats) -> BleuStats:
        return BleuStats(
            self.hyp_len + other.hyp_len, self.ref_len + other.ref_len,
            tuple(a + b for a, b in zip(self.matches, other.matches, strict=True)),
            tuple(a + b for a, b in zip(self.totals, other.totals, strict=True)),
        )


def _closest_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def sentence_stats(hypothesis: str, references: Sequence[str]) -> BleuStats:
    """Length and clipped n-gram statistics of one hypothesis against its references."""
    hyp = tokenize_13a(hypothesis.rstrip())
    refs = [tokenize_13a(r.rstrip()) for r in references]
    hyp_counts = ngram_counts(hyp)
    max_ref_counts: Counter = Counter()
    for ref in refs:
        max_ref_counts |= ngram_counts(ref)  # | keeps the max count of each n-gram over the references
    matches, totals = [0] * MAX_ORDER, [0] * MAX_ORDER
    for ngram, count in hyp_counts.items():
        totals[len(ngram) - 1] += count
        matches[len(ngram) - 1] += min(count, max_ref_counts[ngram])
    return BleuStats(len(hyp), _closest_length(len(hyp), [len(r) for r in refs]), tuple(matches), tuple(totals))


def bleu_from_stats(stats: BleuStats, effective_order: bool = False) -> float:
    """BLEU (0-100) from its statistics with "exp" smoothing; `effective_order` drops orders with no n-gram."""
    if not any(stats.matches):
        return 0.0
    c, r = stats.hyp_len, stats.ref_len
    brevity_penalty = 1.0 if c >= r else math.exp(1 - r / c)
    log_precisions = []
    zero_match_orders = 0
    for matches, total in zip(stats.matches, stats.totals, strict=True):
        if total == 0:  # no n-gram this long in the hypotheses (then none longer either)
            break
        if matches == 0:
            zero_match_orders += 1
            log_precisions.append(math.log(100.0 / (2**zero_match_orders * total)))
        else:
            log_precisions.append(math.log(100.0 * matches / total))
    if not effective_order and len(log_precisions) < MAX_ORDER:
        return 0.0  # a missing order has precision 0, and so has the geometric mean
    return brevity_penalty * math.exp(sum(log_precisions) / len(log_precisions))


def _check_strings(values: object, name: str) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(values).__name__}")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(v).__name__}")


def corpus_bleu(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU (0-100) of `hypotheses` against reference streams: references[j][i] is the j-th reference of
    sentence i (sacrebleu's layout). Equal to sacrebleu.corpus_bleu(hypotheses, references).score."""
    _check_strings(hypotheses, "hypotheses")
    if len(hypotheses) == 0:
        raise ValueError("hypotheses must hold at least one sentence, got an empty list")
    if isinstance(references, (str, bytes)) or not isinstance(references, Sequence):
        raise TypeError(
            f"references must be a list of reference streams (lists of strings), got {type(references).__name__}"
        )
    if len(references) == 0:
        raise ValueError("references must hold at least one reference stream, got an empty list")
    for j, stream in enumerate(references):
        _check_strings(stream, f"references[{j}]")
        if len(stream) != len(hypotheses):
            raise ValueError(
                f"references[{j}] has {len(stream)} sentences but hypotheses has {len(hypotheses)}: each reference "
                "stream holds one reference per hypothesis (references[j][i] is the j-th reference of sentence i)"
            )
    stats = [sentence_stats(hyp, [stream[i] for stream in references]) for i, hyp in enumerate(hypotheses)]
    return bleu_from_stats(sum(stats[1:], stats[0]), effective_order=False)


def sentence_bleu(hypothesis: str, references: list[str]) -> float:
    """BLEU (0-100) of one sentence against its references, with exp smoothing and effective order (sacrebleu's
    sentence_bleu defaults). Sentence BLEU is noisy: prefer corpus_bleu to compare systems."""
    if not isinstance(hypothesis, str):
        raise TypeError(f"hypothesis must be a string, got {type(hypothesis).__name__}")
    _check_strings(references, "references")
    if len(references) == 0:
        raise ValueError("references must hold at least one reference string, got an empty list")
    return bleu_from_stats(sentence_stats(hypothesis, references), effective_order=True)
