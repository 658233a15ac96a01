"""One request's state as the engine sees it: its tokens, how many of them are in the KV cache, its blocks.

The engine treats prompt and output alike: `token_ids` is the prompt followed by the tokens generated so
far, and `num_computed_tokens` of them have their keys and values in the block pool. A request is
scheduled for the tokens not yet computed (a prefill chunk, or the one newest token when decoding); it
samples a new token once all of its tokens are computed. Preemption by recompute sets
`num_computed_tokens` back to 0 and keeps the tokens, so the request later resumes where it was.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from minimodels.serving.sampling import SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"  # in the waiting queue (new, or preempted: its blocks were given back)
    RUNNING = "running"  # holds blocks and is scheduled each step (prefill chunks, then decoding)
    FINISHED = "finished"


@dataclass(eq=False)
class Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    arrival_time: float = field(default_factory=time.perf_counter)
    token_ids: list[int] = field(init=False)  # prompt + output so far
    num_computed_tokens: int = 0  # tokens whose keys/values are in the block pool
    block_table: list[int] = field(default_factory=list)  # physical block of each logical block
    block_hashes: list[int] = field(default_factory=list)  # chained hash of each full computed block
    status: RequestStatus = RequestStatus.WAITING
    finish_reason: str | None = None  # "length", "stop" or "abort"
    num_cached_tokens: int = 0  # prompt tokens found in the prefix cache when last admitted
    num_preemptions: int = 0
    text: str = ""  # output text so far (engine with a tokenizer), cut at a stop string when one is hit
    stable_text: str = ""  # the part of `text` that later tokens cannot change (what streaming may show)
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self):
        self.token_ids = list(self.prompt_ids)
        self.generator = self.params.new_generator()

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_ids):]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def finished(self) -> bool:
        return self.status is RequestStatus.FINISHED
