"""Contrastive training of sentence embeddings with in-batch negatives (MultipleNegativesRankingLoss).

For a batch of B (anchor, positive) pairs, anchor i should be closer to positive i than to the B - 1 other
positives of the batch, which serve as free negatives:

    scores = scale * cos(anchors, candidates)         # (B, B) or (B, B * (1 + K)) with K hard negatives each
    loss   = cross_entropy(scores, [0, 1, ..., B - 1])

This is InfoNCE (van den Oord et al. 2018, arXiv:1807.03748); Henderson et al. 2017 (arXiv:1705.00652) use
it for response retrieval, and sentence-transformers calls it MultipleNegativesRankingLoss. `scale` is the
inverse temperature: 20 means temperature 0.05.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from minimodels.retrieval.embeddings import SentenceEncoder
from minimodels.runtime import progress_bar


def _check_embeddings(name: str, t: torch.Tensor, dims: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {type(t).__name__}")
    if t.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(str(d) for d in dims)} dimensions, got shape {tuple(t.shape)}")


def mnrl_loss(
    anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None,
    scale: float = 20.0, symmetric: bool = False,
) -> torch.Tensor:
    """In-batch-negatives cross-entropy of anchors (B, D) against positives (B, D), optional hard negatives.

    negatives: (B, D) one hard negative per anchor, or (B, K, D) K of them; every anchor is scored against all
    positives and all negatives of the batch. symmetric=True averages in the reverse direction too: each
    positive must pick its own anchor among all anchors (negatives take no part in that direction).
    """
    _check_embeddings("anchors", anchors, (2,))
    _check_embeddings("positives", positives, (2,))
    if positives.shape != anchors.shape:
        raise ValueError(f"positives must have the shape of anchors {tuple(anchors.shape)}, "
                         f"got {tuple(positives.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    candidates = [positives]  # each (B, D)
    if negatives is not None:
        _check_embeddings("negatives", negatives, (2, 3))
        if negatives.dim() == 2:
            negatives = negatives[:, None]  # (B, 1, D)
        if negatives.shape[0] != anchors.shape[0] or negatives.shape[2] != anchors.shape[1]:
            raise ValueError(f"negatives must be (B={anchors.shape[0]}, D={anchors.shape[1]}) or (B, K, D), "
                             f"got {tuple(negatives.shape)}")
        candidates += list(negatives.unbind(dim=1))
    a = F.normalize(anchors, p=2, dim=-1)
    docs = F.normalize(torch.cat(candidates, dim=0), p=2, dim=-1)  # (B * (1 + K), D)
    target = torch.arange(anchors.shape[0], device=anchors.device)  # anchor i's positive is row i of docs
    loss = F.cross_entropy(scale * a @ docs.T, target)  # (B, B * (1 + K)) scores
    if symmetric:
        backward = F.cross_entropy(scale * docs[: anchors.shape[0]] @ a.T, target)  # (B, B): positive -> anchors
        loss = (loss + backward) / 2
    return loss


def batches_without_duplicates(pairs: Sequence[tuple[str, str]], batch_size: int,
                               rng: random.Random) -> list[list[int]]:
    """Shuffled batches of pair indices where no text appears twice in a batch.

    A duplicate would be its own in-batch negative: the loss would push a text away from itself.
    """
    pending = list(range(len(pairs)))
    rng.shuffle(pending)
    batches = []
    while pending:
        batch, seen, rest = [], set(), []
        for i in pending:
            texts = set(pairs[i])
            if len(batch) < batch_size and not texts & seen:
                batch.append(i)
                seen |= texts
            else:
                rest.append(i)
        batches.append(batch)
        pending = rest
    return [b for b in batches if len(b) > 1]  # a batch of one has no negatives


def fine_tune_mnrl(
    encoder: SentenceEncoder, pairs: Sequence[tuple[str, str]], steps: int, batch_size: int = 16, lr: float = 2e-5,
    scale: float = 20.0, max_length: int = 64, warmup: int = 0, seed: int = 0, progress: bool = True,
) -> list[float]:
    """Train `encoder` in place on (query, passage) pairs with `mnrl_loss`; return the loss of each step.

    AdamW with a linear warmup over `warmup` steps then a constant rate; the pairs are cycled through in
    shuffled batches without duplicate texts (epoch after epoch when steps exceed one epoch).
    """
    if not isinstance(pairs, Sequence) or len(pairs) < 2:
        raise ValueError(f"pairs must be a sequence of at least 2 (query, passage) pairs, got {len(pairs)}")
    bad = [i for i, p in enumerate(pairs) if not (len(p) == 2 and all(isinstance(t, str) for t in p))]
    if bad:
        raise TypeError(f"pairs must hold (str, str) tuples; item {bad[0]} is {pairs[bad[0]]!r}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (in-batch negatives need other pairs), got {batch_size}")
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=lr)
    encoder.train()
    losses: list[float] = []
    batches: list[list[int]] = []
    for step in progress_bar(range(steps), enabled=progress, desc="mnrl", leave=False):
        if not batches:
            batches = batches_without_duplicates(pairs, batch_size, rng)
            if not batches:
                raise ValueError("every pair shares a text with every other: no batch of two distinct pairs exists")
        batch = [pairs[i] for i in batches.pop(0)]
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        queries = encoder.embed([q for q, _ in batch], max_length)  # (B, D)
        passages = encoder.embed([p for _, p in batch], max_length)  # (B, D)
        loss = mnrl_loss(queries, passages, scale=scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    encoder.eval()
    return losses
