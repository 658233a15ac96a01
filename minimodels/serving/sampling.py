"""Sampling parameters of a request, and the choice of each request's next token.

The rule is the course's `minimodels.generation.generate.next_token` (temperature, then top-k, then top-p
through `filter_logits`), so a seeded request draws the same tokens as `generate_cached` with that seed.
temperature=0 is greedy (argmax), as in the OpenAI API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from minimodels.generation.generate import next_token


class ParameterError(ValueError):
    """A ValueError that names the offending request parameter (`param`), for OpenAI-style error bodies."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass
class SamplingParams:
    """How to continue one prompt: max_tokens new tokens, chosen greedily (temperature=0) or sampled.

    top_k=0 (or -1) and top_p=1.0 switch those filters off. seed makes a sampled request reproducible
    (its own torch.Generator). stop: strings that end the output (excluded from the text, as in the OpenAI
    API; they need the engine's tokenizer); stop_token_ids: token ids that end it (kept in the ids).
    """

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: str | list[str] | tuple[str, ...] | None = None
    stop_token_ids: list[int] | tuple[int, ...] | None = None
    stop_strings: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self):
        def fail(name: str, reason: str):
            raise ParameterError(name, f"SamplingParams.{name}={getattr(self, name)!r}: {reason}")

        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            fail("max_tokens", "must be an int >= 1")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(name, "must be a finite number")
        if self.temperature < 0:
            fail("temperature", "must be >= 0 (0 means greedy)")
        if not 0.0 < self.top_p <= 1.0:
            fail("top_p", "must be in (0, 1] (1 keeps every token)")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < -1:
            fail("top_k", "must be an int >= 1, or 0 / -1 to keep every token")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            fail("seed", "must be None or an int >= 0")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if not all(isinstance(s, str) and s for s in stop):
            fail("stop", "must be None, a non-empty string or a list of non-empty strings")
        self.stop_strings = tuple(stop)
        ids = list(self.stop_token_ids or [])
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            fail("stop_token_ids", "must be None or a list of ints >= 0")
        self.stop_token_ids = tuple(ids)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def new_generator(self) -> torch.Generator | None:
        """A generator seeded with `seed` (None: draw from torch's global generator, like generate_cached)."""
        return torch.Generator().manual_seed(self.seed) if self.seed is not None else None


def sample_tokens(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """One next token per row of logits (S, V): argmax for greedy rows, `next_token` for sampled rows."""
    if logits.size(0) != len(params) or len(params) != len(generators):
        raise ValueError(f"need one SamplingParams and generator per row of logits, got {logits.size(0)} rows, "
                         f"{len(params)} params and {len(generators)} generators")
    greedy = logits.argmax(dim=-1).tolist()  # (S,) all rows at once; sampled rows are replaced below
    for i, (p, generator) in enumerate(zip(params, generators, strict=True)):
        if not p.greedy:
            top_k = p.top_k if p.top_k > 0 else None
            top_p = p.top_p if p.top_p < 1.0 else None
            greedy[i] = int(next_token(logits[i:i + 1], p.temperature, top_k, top_p, False, generator))
    return greedy
