"""The word tokenizer that lexical retrieval runs on: lowercase, split on non-word characters, drop stop words.

    simple_tokenize("The BM25 score, explained!")                 # ['the', 'bm25', 'score', 'explained']
    simple_tokenize("The BM25 score, explained!", "english")      # ['bm25', 'score', 'explained']

A "word" is a maximal run of Unicode word characters (letters, digits, underscore: the regex class `\\w`), so
`__init__` and `utf8` stay whole. BM25 only needs the query and the documents to be cut the same way; stop
words are optional because BM25's idf already gives words found in most documents little weight.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"\w+")

# Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions): words that say
# little about what a passage is about. Kept short on purpose; pass your own set for anything else.
ENGLISH_STOP_WORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())


def _stop_word_set(stopwords: None | str | Iterable[str]) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if isinstance(stopwords, str):
        if stopwords != "english":
            raise ValueError(f"stopwords must be None, 'english' or a set of words, got the string {stopwords!r}")
        return ENGLISH_STOP_WORDS
    if not isinstance(stopwords, Iterable):
        raise TypeError(f"stopwords must be None, 'english' or a set of words, got {type(stopwords).__name__}")
    words = frozenset(stopwords)
    bad = [w for w in words if not isinstance(w, str)]
    if bad:
        raise TypeError(f"stopwords must all be strings, got {bad[0]!r} ({type(bad[0]).__name__})")
    return frozenset(w.lower() for w in words)


def simple_tokenize(text: str, stopwords: None | str | Iterable[str] = None) -> list[str]:
    """Lowercased words of `text` in order; `stopwords` is None, "english" (ENGLISH_STOP_WORDS) or a set of words."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    words = _WORD.findall(text.lower())
    drop = _stop_word_set(stopwords)
    return [w for w in words if w not in drop] if drop else words
