"""Multiple-choice evaluation by log-likelihood, the way evaluation suites score a base model.

For a question (`context`) and candidate answers (`choices`), each continuation is scored by the log-probability
the model gives it after the context:

    loglik(choice) = sum over the continuation's tokens of log p(token | context, earlier continuation tokens)

The prediction is the choice with the highest score (lm-evaluation-harness's `acc`; Gao et al., 2021,
doi:10.5281/zenodo.5371628). Raw sums favour short answers (every token costs probability), so scores are also
length-normalized: per token (depends on the tokenizer), per UTF-8 byte, and per character (the harness's
`acc_norm` divides by the choice's length in characters; on ASCII text bytes and characters agree).

Texts are tokenized as the harness does: trailing whitespace of the context moves to the front of the
continuation, `encode(context + continuation)` is split after the first len(encode(context)) tokens, and the
tokens after that split are the scored continuation, so that a tokenizer that merges across the boundary
still sees the text it would see at generation time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from minimodels.evaluation.logprobs import CausalLM, as_token_ids, check_model, evaluating, logprob_table


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # the first of equal maxima, like np.argmax


@dataclass(frozen=True)
class ChoiceScores:
    """Per-choice log-likelihoods (nats) and the choice each normalization predicts.

    n_bytes / n_chars are None when the choices were given as token ids (there is no text to measure)."""

    loglik: tuple[float, ...]  # sum of the continuation tokens' log-probabilities
    n_tokens: tuple[int, ...]  # scored continuation tokens
    is_greedy: tuple[bool, ...]  # True when greedy decoding would have produced the continuation exactly
    n_bytes: tuple[int, ...] | None = None  # UTF-8 bytes of each choice string
    n_chars: tuple[int, ...] | None = None  # characters of each choice string

    @property
    def loglik_per_token(self) -> tuple[float, ...]:
        return tuple(ll / n for ll, n in zip(self.loglik, self.n_tokens, strict=True))

    @property
    def loglik_per_byte(self) -> tuple[float, ...] | None:
        if self.n_bytes is None:
            return None
        return tuple(ll / max(n, 1) for ll, n in zip(self.loglik, self.n_bytes, strict=True))

    @property
    def loglik_per_char(self) -> tuple[float, ...] | None:
        if self.n_chars is None:
            return None
        return tuple(ll / max(n, 1) for ll, n in zip(self.loglik, self.n_chars, strict=True))

    @property
    def pred(self) -> int:
        """Index of the most likely choice (the harness's acc)."""
        return _argmax(self.loglik)

    @property
    def pred_per_token(self) -> int:
        return _argmax(self.loglik_per_token)

    @property
    def pred_per_byte(self) -> int | None:
        return None if self.n_bytes is None else _argmax(self.loglik_per_byte)

    @property
    def pred_per_char(self) -> int | None:
        """Index of the best choice per character (the harness's acc_norm)."""
        return None if self.n_chars is None else _argmax(self.loglik_per_char)


def _split_texts(
    context: str, choices: Sequence[str], encode: Callable[[str], Sequence[int]]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Context ids and each continuation's ids, tokenized together as lm-evaluation-harness does."""
    n_spaces = len(context) - len(context.rstrip())
    moved, context = context[len(context) - n_spaces:], context[: len(context) - n_spaces]
    context_ids = as_token_ids(encode(context), "encode(context)")
    continuations = []
    for i, choice in enumerate(choices):
        whole = as_token_ids(encode(context + moved + choice), f"encode(context + choices[{i}])")
        continuations.append(whole[context_ids.numel():])
    return context_ids, continuations


def score_choices(
    model: CausalLM,
    context: str | Sequence[int] | torch.Tensor,
    choices: Sequence[str] | Sequence[Sequence[int] | torch.Tensor],
    encode: Callable[[str], Sequence[int]] | None = None,
    max_length: int | None = None,
) -> ChoiceScores:
    """Score each continuation in `choices` after `context` with the causal LM `model`.

    Give texts and `encode` (str -> token ids), or token ids for both context and choices (then no byte or
    character normalization). The context must give at least one token (put a BOS token first for an empty
    question). With max_length, the model sees at most the last max_length tokens of context + continuation
    (the context is cut from the left, as the harness does).
    """
    check_model(model)
    if isinstance(choices, (str, bytes, torch.Tensor)) or not isinstance(choices, Sequence):
        raise TypeError(f"choices must be a list of continuations, got {type(choices).__name__}")
    if len(choices) == 0:
        raise ValueError("choices must hold at least one continuation, got an empty list")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be None or a positive int, got {max_length!r}")
    texts = isinstance(context, str)
    if texts:
        if encode is None or not callable(encode):
            raise TypeError(f"context and choices are texts: pass encode (str -> token ids), got encode={encode!r}")
        bad = next((i for i, c in enumerate(choices) if not isinstance(c, str)), None)
        if bad is not None:
            raise TypeError(f"context is a string, so every choice must be one; choices[{bad}] is "
                            f"{type(choices[bad]).__name__}")
        context_ids, continuations = _split_texts(context, choices, encode)
    else:
        if encode is not None:
            raise TypeError("encode is only for texts; context and choices were given as token ids")
        context_ids = as_token_ids(context, "context")
        continuations = [as_token_ids(c, f"choices[{i}]") for i, c in enumerate(choices)]
    if context_ids.numel() == 0:
        raise ValueError("context gives no token: nothing would predict the first continuation token "
                         "(start the context with a BOS token)")
    for i, cont in enumerate(continuations):
        if cont.numel() == 0:
            raise ValueError(f"choices[{i}] gives no continuation token to score")
        if max_length is not None and cont.numel() > max_length:
            raise ValueError(f"choices[{i}] has {cont.numel()} tokens, more than max_length={max_length}")

    logliks, n_tokens, greedy = [], [], []
    with evaluating(model):
        for cont in continuations:
            window = torch.cat([context_ids, cont])
            if max_length is not None:
                window = window[-(max_length + 1):]
            # The last token is only a target: the model reads window[:-1] (at most max_length tokens).
            logp_all = logprob_table(model, window[:-1], targets=cont)  # (T-1, V): row t predicts window[t+1]
            cont_logp = logp_all[-cont.numel():]  # (n, V): the predictions of the continuation tokens
            picked = cont_logp.gather(-1, cont.unsqueeze(-1)).squeeze(-1)
            logliks.append(float(picked.double().sum()))
            n_tokens.append(cont.numel())
            greedy.append(bool((cont_logp.argmax(-1) == cont).all()))
    return ChoiceScores(
        loglik=tuple(logliks), n_tokens=tuple(n_tokens), is_greedy=tuple(greedy),
        n_bytes=tuple(len(c.encode("utf-8")) for c in choices) if texts else None,
        n_chars=tuple(len(c) for c in choices) if texts else None,
    )
