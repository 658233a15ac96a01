"""Which requests run in the next step, and on how many tokens: continuous batching with chunked prefill.

Continuous (iteration-level) batching (Yu et al. 2022, Orca, OSDI): the batch is re-formed at every
step, so a finished request leaves at once and a waiting one joins between two decode steps, instead of
the whole batch waiting for its longest member. Each step has a budget of max_num_batched_tokens:

1. Running requests first, oldest first: a decoding request needs 1 token, a request still in its prefill
   the rest of its prompt, cut to the budget (chunked prefill). When the block pool cannot hold a
   request's new tokens, the newest running request is preempted by recompute: it gives all its blocks
   back and returns to the front of the waiting queue, keeping its tokens (vLLM's default policy).
2. Then waiting requests in arrival order, while the budget, max_num_seqs and the free blocks allow,
   each starting from the longest prefix the prefix cache holds (at least its last token is computed,
   to get the logits of the next one). None joins in a step that had to preempt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from minimodels.serving.block_manager import BlockManager
from minimodels.serving.request import Request, RequestStatus


@dataclass
class ScheduledChunk:
    """num_tokens tokens of `request`, from position request.num_computed_tokens on, computed this step."""

    request: Request
    num_tokens: int
    is_prefill: bool  # prompt tokens (or a recompute after preemption), not just the one newest token

    @property
    def samples(self) -> bool:
        """True when this chunk reaches the request's last token: its logits give the next token."""
        return self.request.num_computed_tokens + self.num_tokens == len(self.request.token_ids)


@dataclass
class SchedulerOutput:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)  # copy-on-write block pairs (src, dst)
    preempted: list[Request] = field(default_factory=list)
    admitted: list[Request] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int = 64, max_num_batched_tokens: int = 2048):
        for name, value in (("max_num_seqs", max_num_seqs), ("max_num_batched_tokens", max_num_batched_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Scheduler.{name} must be a positive int, got {value!r}")
        self.block_manager = block_manager
        self.max_num_seqs, self.max_num_batched_tokens = max_num_seqs, max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # oldest first
        self.num_preemptions = 0
        self.prefix_query_tokens = self.prefix_hit_tokens = 0  # prompt tokens looked up / found, on admission

    def add(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.waiting.append(request)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, request: Request, reason: str) -> None:
        """Remove the request from its queue and give back its blocks."""
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        elif request.status is RequestStatus.WAITING:
            self.waiting.remove(request)
        self.block_manager.free_request(request)
        request.status, request.finish_reason = RequestStatus.FINISHED, reason

    def _preempt(self, request: Request) -> None:
        self.block_manager.free_request(request)
        request.num_computed_tokens = 0
        request.status = RequestStatus.WAITING
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            request = self.running[i]
            n = min(request.num_uncomputed_tokens, budget)
            while (copies := self.block_manager.allocate_slots(request, n)) is None:
                victim = self.running.pop()  # the newest request gives its blocks back
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is request:
                    break
            if copies is None:  # the request preempted itself: every request before it is scheduled
                break
            out.copies += copies
            out.chunks.append(ScheduledChunk(request, n, is_prefill=n > 1 or request.num_output_tokens == 0))
            budget -= n
            i += 1
        while self.waiting and not out.preempted and budget > 0 and len(self.running) < self.max_num_seqs:
            request = self.waiting[0]
            cached = self.block_manager.find_cached_prefix(request)
            # the last token is always computed: its logits choose the next token
            request.num_computed_tokens = min(len(cached) * self.block_manager.block_size,
                                              len(request.token_ids) - 1)
            n = min(request.num_uncomputed_tokens, budget)
            copies = self.block_manager.allocate_slots(request, n, cached)
            if copies is None:
                request.num_computed_tokens = 0
                break  # first come, first served: nobody overtakes the head of the queue
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            request.num_cached_tokens = request.num_computed_tokens
            self.prefix_query_tokens += len(request.token_ids)
            self.prefix_hit_tokens += request.num_computed_tokens
            self.running.append(request)
            out.admitted.append(request)
            out.copies += copies
            out.chunks.append(ScheduledChunk(request, n, is_prefill=n > 1 or request.num_output_tokens == 0))
            budget -= n
        return out
