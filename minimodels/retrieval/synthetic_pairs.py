"""Synthetic (query, passage) pairs from raw text with the inverse cloze task, for contrastive fine-tuning.

Lee, Chang & Toutanova 2019, "Latent Retrieval for Weakly Supervised Open Domain Question Answering"
(arXiv:1906.00300): take a passage, pull one sentence out of it; the sentence is a pseudo-query and the
rest of the passage its positive. No labels and no generator model are needed, and the pair cannot be
solved by copying words: the query is not in its passage, so the encoder has to learn what text is about.

    passages = prose_passages(load_corpus())     # prose paragraphs, code and headings dropped
    pairs = inverse_cloze_pairs(passages)         # one (sentence, rest of passage) pair per passage
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(“])")  # split after . ! ? before a capital or a quote
HEADING_RULE = re.compile(r"[*=\-^~]{3,}")  # the underline of a reStructuredText heading


@dataclass(frozen=True)
class Pair:
    query: str
    passage: str
    source: int  # index of the passage it was cut from


@dataclass(frozen=True)
class FilterReport:
    """How many candidate sentences each filter removed (so the filtering can be shown and questioned)."""

    passages: int
    sentences: int
    too_short_or_long: int
    code_like: int
    introduces_code_or_reference: int
    passage_left_too_short: int
    duplicate_query: int
    pairs: int


def _join_lines(block: str) -> str:
    text = ""
    for line in (raw.strip() for raw in block.split("\n")):
        if text.endswith("-") and not text.endswith(" -"):
            text += line  # a word hyphenated across lines ("built-\nin")
        else:
            text = f"{text} {line}" if text else line
    return text


def prose_passages(text: str, min_words: int = 40, max_words: int = 90) -> list[str]:
    """Passages of min_words..max_words words of prose: consecutive paragraphs of one section, merged.

    Dropped: code and grammar blocks (indented), headings (the line above a *** / === rule), which also end
    a passage so that a passage never spans two sections. A passage stops growing before max_words.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty str")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}")
    passages, current = [], []

    def flush():
        if current and sum(len(p.split()) for p in current) >= min_words:
            passages.append(" ".join(current))
        current.clear()

    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if HEADING_RULE.fullmatch(lines[-1].strip()):  # a heading: a new section starts
            flush()
            continue
        if block.lstrip("\n").startswith((" ", "\t")):  # code, grammar rules, indented lists
            continue
        paragraph = _join_lines(block)
        if current and sum(len(p.split()) for p in current) + len(paragraph.split()) > max_words:
            flush()
        if len(paragraph.split()) <= max_words:
            current.append(paragraph)
        if sum(len(p.split()) for p in current) >= min_words:
            flush()
    flush()
    return list(dict.fromkeys(passages))  # identical passages (repeated boilerplate) kept once


def split_sentences(passage: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(passage) if s.strip()]


def _is_code_like(sentence: str) -> bool:
    """Fewer than 85% of the characters are letters, spaces or plain punctuation: mostly symbols or code."""
    plain = sum(c.isalpha() or c.isspace() or c in ",.;'’()-" for c in sentence)
    return plain < 0.85 * len(sentence)


def inverse_cloze_pairs(
    passages: list[str], seed: int = 0, min_query_words: int = 8, max_query_words: int = 40,
    min_rest_words: int = 25, with_report: bool = False,
) -> list[Pair] | tuple[list[Pair], FilterReport]:
    """One (sentence, passage without it) pair per passage whose sentences pass the filters.

    A sentence can be the query when it has min_query_words..max_query_words words, is prose (not code-like),
    does not end with ':' (it introduces an example that is not in the passage) and does not start with
    'See ' (a cross-reference says nothing by itself); the rest must keep min_rest_words words; a sentence
    already used as a query (boilerplate repeated across sections) is not used again. Among the candidates
    of a passage one is drawn at random (seeded).
    """
    if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
        raise TypeError("passages must be a list of str")
    rng = random.Random(seed)
    pairs: list[Pair] = []
    used_queries: set[str] = set()
    counts = dict(sentences=0, too_short_or_long=0, code_like=0, introduces_code_or_reference=0,
                  passage_left_too_short=0, duplicate_query=0)
    for index, passage in enumerate(passages):
        sentences = split_sentences(passage)
        candidates = []
        for i, sentence in enumerate(sentences):
            counts["sentences"] += 1
            n_words = len(sentence.split())
            rest = " ".join(sentences[:i] + sentences[i + 1:])
            if not min_query_words <= n_words <= max_query_words:
                counts["too_short_or_long"] += 1
            elif _is_code_like(sentence):
                counts["code_like"] += 1
            elif sentence.endswith(":") or sentence.startswith("See "):
                counts["introduces_code_or_reference"] += 1
            elif len(rest.split()) < min_rest_words:
                counts["passage_left_too_short"] += 1
            elif sentence in used_queries:
                counts["duplicate_query"] += 1
            else:
                candidates.append((sentence, rest))
        if candidates:
            query, rest = rng.choice(candidates)
            used_queries.add(query)
            pairs.append(Pair(query, rest, index))
    if with_report:
        return pairs, FilterReport(passages=len(passages), pairs=len(pairs), **counts)
    return pairs
