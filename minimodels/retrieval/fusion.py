"""Combining and reordering rankings: reciprocal-rank fusion and the long-context reorder.

Reciprocal-rank fusion (Cormack, Clarke & Buettcher 2009, SIGIR) scores a document by the sum over
rankings of 1 / (k + rank), with ranks starting at 1 and k = 60: it needs no score calibration between a
lexical and a dense retriever, only their orders.
Long-context reorder: language models use the beginning and the end of a long context best and the middle
worst ("lost in the middle", Liu et al. 2023, arXiv:2307.03172), so the best passages go to both ends.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]], k: int = 60) -> list[tuple[Hashable, float]]:
    """Fuse rankings (each a list of ids, best first) into one list of (id, score), best first.

    Ties are broken by the first ranking in which an id appears, then by its position there.
    """
    if not rankings:
        raise ValueError("reciprocal_rank_fusion needs at least one ranking")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    scores: dict[Hashable, float] = {}
    first_seen: dict[Hashable, tuple[int, int]] = {}
    for r, ranking in enumerate(rankings):
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"ranking {r} lists an id twice")
        for position, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + position + 1)
            first_seen.setdefault(doc, (r, position))
    return sorted(scores.items(), key=lambda item: (-item[1], first_seen[item[0]]))


def long_context_reorder(items: Sequence) -> list:
    """Best-first items -> an order with the best at both ends and the weakest in the middle.

    Ranks 1, 2, 3, 4, 5 become 1, 3, 5, 4, 2: odd ranks fill from the front, even ranks from the back.
    """
    items = list(items)
    front, back = items[0::2], items[1::2]
    return front + back[::-1]
