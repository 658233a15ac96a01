"""The one measurement every likelihood metric is made of: log p(token | the tokens before it).

Perplexity (perplexity.py) and multiple-choice scoring (choice.py) both run a causal LM
`model(input_ids) -> logits (B, T, V)` over one window of token ids and read the log-probability the model
gave to each next token. This file holds that step and the argument checks both share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

CausalLM = Callable[[torch.Tensor], torch.Tensor]


def as_token_ids(ids: Sequence[int] | torch.Tensor, name: str) -> torch.Tensor:
    """`ids` (a list of ints or a 1-D integer tensor) as a 1-D int64 CPU tensor; TypeError/ValueError otherwise."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        out = ids.detach().to("cpu", torch.int64)
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a list of int token ids or a 1-D tensor, got {type(ids).__name__}")
    else:
        bad = next((x for x in ids if isinstance(x, bool) or not isinstance(x, int)), None)
        if bad is not None:
            raise TypeError(f"{name} must hold int token ids, found {bad!r} ({type(bad).__name__})")
        out = torch.tensor(list(ids), dtype=torch.int64)
    if out.numel() and int(out.min()) < 0:
        raise ValueError(f"{name} must hold non-negative token ids, found {int(out.min())}")
    return out


def check_model(model: object) -> None:
    """A causal LM is anything callable as model(input_ids) -> logits."""
    if not callable(model):
        raise TypeError(f"model must be callable as model(input_ids) -> logits (B, T, V), got {type(model).__name__}")


def model_device(model: object) -> torch.device:
    """Where the model's parameters live (CPU for a parameter-free callable)."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


@contextmanager
def evaluating(model: object) -> Iterator[None]:
    """Eval mode (dropout off) and no autograd for the duration, restoring the model's previous mode."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _check_in_vocab(input_ids: torch.Tensor, targets: torch.Tensor | None, vocab: int) -> None:
    for ids in (input_ids, targets):
        if ids is not None and ids.numel() and int(ids.max()) >= vocab:
            raise ValueError(f"token id {int(ids.max())} is out of range for the model's vocabulary of {vocab}")


def logprob_table(model: CausalLM, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """log_softmax of model(input_ids) at every position, float32 on the CPU: row t is the distribution of the
    token after input_ids[: t + 1].

    input_ids: (T,) int64, T >= 1. Returns (T, V). `targets`, if given, are checked against the vocabulary too.
    Call inside `evaluating(model)`. The softmax runs in float32 on the model's device (float64 is missing on
    some accelerators); callers sum the picked log-probabilities in float64.
    """
    declared = getattr(getattr(model, "config", None), "vocab_size", None)  # course models say it up front
    if isinstance(declared, int):
        _check_in_vocab(input_ids, targets, declared)
    logits = model(input_ids.to(model_device(model)).unsqueeze(0))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != (1, input_ids.numel()):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"model(input_ids of shape (1, {input_ids.numel()})) must return logits (1, T, V), got {shape}"
        )
    _check_in_vocab(input_ids, targets, logits.size(-1))
    return F.log_softmax(logits[0].float(), dim=-1).cpu()  # (T, V)


def next_token_logprobs(model: CausalLM, window: torch.Tensor) -> torch.Tensor:
    """log p(window[t + 1] | window[: t + 1]) for t = 0 .. T-2, float64: the model is called on the whole window
    (as Hugging Face's perplexity guide does) and the last position's prediction is unused.

    window: (T,) int64 token ids, T >= 2. Returns (T - 1,). Call inside `evaluating(model)`.
    """
    logp = logprob_table(model, window)[:-1]  # (T-1, V): the prediction made at each position
    return logp.gather(-1, window[1:].unsqueeze(-1)).squeeze(-1).double()
