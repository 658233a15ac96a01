"""Perplexity: how surprised a causal LM is by held-out text, in a form comparable across models.

    nll_per_token = (sum over every scored token of -log p(token | tokens before it)) / (number of scored tokens)
    ppl           = exp(nll_per_token)                    # corpus level: NOT the mean of per-text perplexities
    bits_per_byte = (sum of -log2 p) / (UTF-8 bytes of the text)   # comparable across tokenizers

The entropy view: nll_per_token is the cross-entropy H between the text and the model, per token. In bits,
H_bits = H_nats / ln 2 and 2 ** H_bits == e ** H_nats == ppl: perplexity is the size of a uniform choice that
would be as surprising. A model that outputs uniform logits over V tokens has ppl == V exactly.

Texts longer than the model's context are scored with a strided sliding window, as in Hugging Face's
"Perplexity of fixed-length models" guide: windows of `context_len` tokens start every `stride` tokens, and each
window scores only the tokens that no earlier window scored; the tokens before them in the window are context,
excluded from the loss. The first window scores all but the first token (nothing predicts it). With
stride == context_len the windows are disjoint (fast, little context); a smaller stride gives every scored token
at least context_len - stride tokens of context (slower, closer to the model's true perplexity).
Bits per byte follows Gao et al. (2020), "The Pile", arXiv:2101.00027.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from minimodels.evaluation.logprobs import CausalLM, as_token_ids, check_model, evaluating, next_token_logprobs

Document = str | Sequence[int] | torch.Tensor


class TokenNLL(NamedTuple):
    """The tokens a strided evaluation scored: their positions in the sequence and their NLL in nats."""

    positions: torch.Tensor  # (N_scored,) int64, increasing
    nll: torch.Tensor  # (N_scored,) float64, -log p(ids[position] | the window's tokens before it)


@dataclass(frozen=True, repr=False)
class PerplexityResult:
    """Corpus-level perplexity figures. NLLs are in nats; bits_per_byte is None when the byte count is unknown."""

    total_nll: float  # sum of the scored tokens' NLL (nats)
    n_tokens: int  # number of scored tokens
    n_bytes: int | None = None  # UTF-8 bytes of the evaluated text

    def __post_init__(self):
        if isinstance(self.n_tokens, bool) or not isinstance(self.n_tokens, int) or self.n_tokens < 1:
            raise ValueError(f"PerplexityResult.n_tokens={self.n_tokens!r}: must be a positive int")
        if self.n_bytes is not None and (
            isinstance(self.n_bytes, bool) or not isinstance(self.n_bytes, int) or self.n_bytes < 1
        ):
            raise ValueError(f"PerplexityResult.n_bytes={self.n_bytes!r}: must be None or a positive int")
        if not math.isfinite(self.total_nll) or self.total_nll < 0:
            raise ValueError(f"PerplexityResult.total_nll={self.total_nll!r}: must be a finite number >= 0")

    def __repr__(self) -> str:
        bpb = "None" if self.bits_per_byte is None else f"{self.bits_per_byte:.4f}"
        return (
            f"PerplexityResult(ppl={self.ppl:.4f}, nll_per_token={self.nll_per_token:.4f} nats, "
            f"bits_per_token={self.bits_per_token:.4f}, bits_per_byte={bpb}, n_tokens={self.n_tokens}, "
            f"n_bytes={self.n_bytes})"
        )

    @property
    def nll_per_token(self) -> float:
        return self.total_nll / self.n_tokens

    @property
    def ppl(self) -> float:
        return math.exp(self.nll_per_token)

    @property
    def bits_per_token(self) -> float:
        return nats_to_bits(self.nll_per_token)

    @property
    def bits_per_byte(self) -> float | None:
        return None if self.n_bytes is None else bits_per_byte(self.total_nll, self.n_bytes)


def nats_to_bits(nats: float) -> float:
    """An information quantity in nats (natural log) expressed in bits (log base 2): divide by ln 2."""
    return nats / math.log(2)


def bits_per_byte(total_nll: float, n_bytes: int) -> float:
    """Total NLL (nats) of a text over its length in UTF-8 bytes, in bits: independent of the tokenizer."""
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 1:
        raise ValueError(f"n_bytes must be a positive int, got {n_bytes!r}")
    return nats_to_bits(total_nll) / n_bytes


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy H = -sum p log2 p over the last dim, in bits (0 log 0 counts as 0). probs: (..., V)."""
    if not isinstance(probs, torch.Tensor) or probs.dim() < 1 or not probs.dtype.is_floating_point:
        raise TypeError(f"probs must be a floating-point tensor (..., V), got {probs!r:.60}")
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(-1), torch.ones((), dtype=probs.dtype), atol=1e-4):
        raise ValueError("probs must be non-negative and sum to 1 over the last dim")
    terms = torch.where(probs > 0, -probs * torch.log2(probs.clamp_min(torch.finfo(probs.dtype).tiny)), 0.0)
    return terms.sum(-1)


def _check_window(context_len: int, stride: int | None) -> int:
    if isinstance(context_len, bool) or not isinstance(context_len, int) or context_len < 2:
        raise ValueError(
            f"context_len must be an int >= 2 (a window needs a context and a target), got {context_len!r}"
        )
    if stride is None:
        return context_len
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= context_len:
        raise ValueError(
            f"stride must be an int in [1, context_len={context_len}] (a larger stride would skip tokens), "
            f"got {stride!r}"
        )
    return stride


def token_nll(
    model: CausalLM, ids: Sequence[int] | torch.Tensor, context_len: int, stride: int | None = None
) -> TokenNLL:
    """Per-token NLL of one sequence, strided windows of `context_len` tokens (stride defaults to context_len).

    Window k covers ids[k*stride : k*stride + context_len] and scores the positions past the previous window's end
    (past its own first token for the first window): every position is scored at most once, each with the
    longest context its window gives. With stride < context_len every position 1 .. N-1 is scored; with
    stride == context_len the first token of every window has no context and is skipped.
    """
    check_model(model)
    ids = as_token_ids(ids, "ids")
    stride = _check_window(context_len, stride)
    n = ids.numel()
    positions, nlls = [], []
    prev_end = 0
    with evaluating(model):
        for begin in range(0, max(n - 1, 0), stride):
            end = min(begin + context_len, n)
            first_new = max(prev_end, begin + 1)  # the first position this window scores
            if end > first_new:
                logp = next_token_logprobs(model, ids[begin:end])  # (end - begin - 1,): logp[k] is for ids[begin+k+1]
                nlls.append(-logp[first_new - begin - 1:])
                positions.append(torch.arange(first_new, end))
            prev_end = end
            if end == n:
                break
    if not nlls:
        return TokenNLL(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64))
    return TokenNLL(torch.cat(positions), torch.cat(nlls))


def perplexity(
    model: CausalLM,
    documents: Sequence[Document],
    context_len: int,
    stride: int | None = None,
    encode: Callable[[str], Sequence[int]] | None = None,
    n_bytes: int | None = None,
) -> PerplexityResult:
    """Corpus perplexity of `documents` (texts with `encode`, or token-id lists / 1-D tensors), each scored alone.

    Sums the NLL of every scored token over all documents and divides by their number (see token_nll for which
    tokens a window scores). For texts, n_bytes defaults to their UTF-8 length so that bits_per_byte is filled
    in; for token ids pass n_bytes to get it. Each document's first token is context only: prepend a BOS token
    in `encode` if it should be scored too (which also makes bits per byte exact).
    """
    check_model(model)
    if isinstance(documents, (str, bytes, torch.Tensor)) or not isinstance(documents, Sequence):
        raise TypeError(
            "documents must be a list of documents (texts, token-id lists or 1-D tensors), "
            f"got {type(documents).__name__}; wrap a single document in a list"
        )
    if len(documents) == 0:
        raise ValueError("documents must hold at least one document, got an empty list")
    _check_window(context_len, stride)
    n_text = sum(isinstance(d, str) for d in documents)
    if 0 < n_text < len(documents):
        raise TypeError("documents must be all texts or all token ids, got a mix")
    if n_text and encode is None:
        raise TypeError("documents are texts: pass encode (str -> list of token ids)")
    if n_text and not callable(encode):
        raise TypeError(f"encode must be callable (str -> list of token ids), got {type(encode).__name__}")
    if n_bytes is not None and (isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 1):
        raise ValueError(f"n_bytes must be None or a positive int, got {n_bytes!r}")
    if n_text and n_bytes is None:
        n_bytes = sum(len(d.encode("utf-8")) for d in documents)

    total_nll, n_tokens = 0.0, 0
    for i, doc in enumerate(documents):
        ids = as_token_ids(encode(doc) if isinstance(doc, str) else doc, f"documents[{i}]")
        scored = token_nll(model, ids, context_len, stride)
        total_nll += float(scored.nll.sum())
        n_tokens += scored.nll.numel()
    if n_tokens == 0:
        raise ValueError("no token was scored: every document is shorter than 2 tokens")
    return PerplexityResult(total_nll=total_nll, n_tokens=n_tokens, n_bytes=n_bytes)
