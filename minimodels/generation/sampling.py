"""Choosing the next token, and the checks and setup every decoder of the course starts with.

- `filter_logits` and `next_token`: greedy, or sampled with temperature, top-k and top-p (nucleus),
  seeded through a torch.Generator so that the global RNG is left alone.
- `decoding(model, input_ids, max_new_tokens, ...)`: the one prologue of `generate`, `generate_cached` and
  `generate_recurrent`. It checks the arguments at the boundary, seeds the sampler, switches the model to
  eval mode and gradients off, and gives the model its previous mode back when decoding ends, also when
  it raises.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from minimodels.models.inputs import check_token_ids


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top_k largest and outside the smallest set whose mass reaches top_p.

    logits (B, V). top_p keeps the most probable tokens whose cumulative probability first reaches top_p
    (at least one token is always kept).
    """
    check_sampling(1.0, top_k, top_p, greedy=False)
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = mass_before >= top_p  # the first token never drops
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
    greedy: bool = False, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from last-position logits (B, V); returns (B, 1)."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    check_sampling(temperature, top_k, top_p, greedy)
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, greedy: bool) -> None:
    """ValueError/TypeError naming the sampling argument that cannot work (temperature is unused if greedy)."""
    if not greedy:
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, numbers.Real) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")


@dataclass(frozen=True)
class Sampler:
    """`sample(logits (B, V)) -> (B, 1)` with fixed settings and its own seeded generator."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    generator: torch.Generator | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return next_token(logits, self.temperature, self.top_k, self.top_p, self.greedy, self.generator)


def _hugging_face_class(model: object) -> bool:
    return any(cls.__module__.split(".")[0] == "transformers" for cls in type(model).__mro__)


def _is_list(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _as_batch(op: str, input_ids: torch.Tensor | Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """input_ids as a (B, T) integer tensor; a list of prompts must have one length (no padding here)."""
    if not isinstance(input_ids, torch.Tensor):
        if not _is_list(input_ids) or not all(_is_list(p) for p in input_ids):
            raise TypeError(f"{op}: input_ids must be a (batch, time) tensor of token ids or a list of prompts "
                            f"(lists of ints), got {type(input_ids).__name__}")
        lengths = [len(p) for p in input_ids]
        if len(set(lengths)) > 1:
            raise ValueError(
                f"{op}: the prompts have unequal lengths {lengths}; a batch needs one length (the course "
                f"decoders do no padding): generate each prompt on its own, or cut them to one length"
            )
        input_ids = torch.tensor(input_ids, dtype=torch.long, device=device)
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise TypeError(f"{op}: input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.dim() != 2 or input_ids.size(0) < 1 or input_ids.size(1) < 1:
        raise ValueError(
            f"{op}: input_ids must be (batch, time) with batch >= 1 and time >= 1, got shape {tuple(input_ids.shape)}"
        )
    return input_ids


@contextmanager
def decoding(
    op: str, model: torch.nn.Module, input_ids: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int, *,
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
    seed: int | None = None, check_model: Callable[[str, torch.nn.Module], None] | None = None,
) -> Iterator[tuple[torch.Tensor, Sampler]]:
    """Check a decoder's arguments, then yield (input_ids (B, T) tensor, sampler) with the model in eval mode.

    `op` names the caller in the errors; `check_model(op, model)` checks what this decoder needs of the
    model (a KV cache, a recurrent step) after the checks every decoder makes. Gradients are off inside the
    block; the model's train/eval mode is restored when the block ends, whether it returns or raises.
    `seed` seeds a generator of its own, so sampling is reproducible without touching the global RNG.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{op}: model must be a torch.nn.Module, got {type(model).__name__}")
    if _hugging_face_class(model):
        raise TypeError(
            f"{op}: {type(model).__name__} is a Hugging Face transformers model; the course decoders run course "
            f"models: convert it first with minimodels.from_hf(model) (or call its own .generate())"
        )
    if check_model is not None:
        check_model(op, model)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"{op}: max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
    if max_new_tokens < 0:
        raise ValueError(f"{op}: max_new_tokens must be >= 0, got {max_new_tokens}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"{op}: seed must be None or a non-negative int, got {seed!r}")
    check_sampling(temperature, top_k, top_p, greedy)
    param = next(model.parameters(), None)
    input_ids = _as_batch(op, input_ids, param.device if param is not None else torch.device("cpu"))
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab_size is not None:
        check_token_ids(input_ids, vocab_size, f"{op}: input_ids")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sampler = Sampler(temperature, top_k, top_p, greedy, generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield input_ids, sampler
    finally:
        model.train(was_training)
