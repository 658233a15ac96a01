"""LLMEngine: many requests decoded together over a paged KV cache, vLLM style.

    engine = LLMEngine(model, tokenizer)
    outputs = engine.generate([prompt_ids_a, prompt_ids_b], SamplingParams(max_tokens=32))

or, to interleave arrivals with decoding (what a server does):

    rid = engine.add_request(prompt_ids, SamplingParams(max_tokens=32))
    while engine.has_unfinished_requests():
        for out in engine.step(): ...            # RequestOutput: new tokens per request, finished flag

A step asks the scheduler what to run (continuous batching, chunked prefill, preemption), copies the
copy-on-write blocks, runs the model once over all scheduled tokens (ModelRunner), samples one token for
each request whose tokens are all computed, and finishes requests on max_tokens, a stop token or a stop
string. Greedy outputs are those of `generate_cached`, token for token.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from minimodels.serving.block_manager import BlockManager
from minimodels.serving.model_runner import ModelRunner
from minimodels.serving.request import Request
from minimodels.serving.sampling import ParameterError, SamplingParams, sample_tokens
from minimodels.serving.scheduler import Scheduler, SchedulerOutput

__all__ = ["LLMEngine", "PromptTooLongError", "RequestOutput", "SamplingParams"]


class PromptTooLongError(ParameterError):
    """The prompt plus max_tokens does not fit the model's context (or the whole block pool)."""

    def __init__(self, message: str):
        super().__init__("prompt", message)


@dataclass
class RequestOutput:
    request_id: str
    new_token_ids: list[int]  # tokens generated in this step
    token_ids: list[int]  # every output token so far (prompt excluded)
    finished: bool
    finish_reason: str | None  # "length", "stop" (a stop token or string) or "abort"
    text: str | None  # output text that later tokens cannot change (the whole text once finished)
    num_prompt_tokens: int
    num_cached_tokens: int  # prompt tokens found in the prefix cache


class LLMEngine:
    """Batched serving of a course Llama (dense, Mistral's sliding window, Mixtral's experts).

    block_size: token slots per KV block. num_blocks: blocks in the pool (default: enough for
    max_num_seqs requests of max_model_len tokens). max_num_seqs: requests running at once.
    max_num_batched_tokens: tokens per step (prefills are chunked to fit). max_model_len: longest
    prompt + output (default model.config.max_seq_len).
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer=None, block_size: int = 16, num_blocks: int | None = None,
        max_num_seqs: int = 64, max_num_batched_tokens: int = 2048, max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
    ):
        config = getattr(model, "config", None)
        max_model_len = max_model_len if max_model_len is not None else getattr(config, "max_seq_len", None)
        if isinstance(max_model_len, bool) or not isinstance(max_model_len, int) or max_model_len < 1:
            raise ValueError(f"LLMEngine.max_model_len must be a positive int, got {max_model_len!r}")
        for name, value in (("block_size", block_size), ("max_num_seqs", max_num_seqs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LLMEngine.{name} must be a positive int, got {value!r}")
        if num_blocks is None:
            num_blocks = max_num_seqs * -(-max_model_len // block_size)
        if tokenizer is not None and not (callable(getattr(tokenizer, "encode", None))
                                          and callable(getattr(tokenizer, "decode", None))):
            raise TypeError(f"tokenizer must have encode(text) -> ids and decode(ids) -> text, "
                            f"got {type(tokenizer).__name__}")
        self.block_manager = BlockManager(num_blocks, block_size, enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, max_num_seqs, max_num_batched_tokens)
        self.runner = ModelRunner(model, num_blocks, block_size)  # checks the model family
        model.eval()
        self.model, self.tokenizer, self.max_model_len = model, tokenizer, max_model_len
        self.vocab_size = config.vocab_size
        self.requests: dict[str, Request] = {}  # unfinished requests by id
        self.last_schedule: SchedulerOutput | None = None  # what the latest step ran (for timelines)
        self.num_steps = 0
        self._ids = itertools.count()

    # ---- requests -----------------------------------------------------------------------------------
    def check_request(self, prompt: str | list[int], params: SamplingParams) -> list[int]:
        """The prompt's token ids, after checking the request can ever run (no engine state is touched)."""
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise TypeError("a text prompt needs the engine's tokenizer; give token ids instead")
            prompt = self.tokenizer.encode(prompt)
        if isinstance(prompt, torch.Tensor):
            prompt = prompt.reshape(-1).tolist() if prompt.dim() <= 1 or prompt.size(0) == 1 else prompt
        if not isinstance(prompt, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool)
                                                             for t in prompt):
            raise TypeError(f"prompt must be a string or a list of token ids (ints), got {type(prompt).__name__}")
        if not prompt:
            raise ParameterError("prompt", "the prompt is empty: give at least one token")
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise ParameterError("prompt", f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
        if params.stop_strings and self.tokenizer is None:
            raise ParameterError("stop", "stop strings need the engine's tokenizer (or use stop_token_ids)")
        total = len(prompt) + params.max_tokens
        if total > self.max_model_len:
            raise PromptTooLongError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{total} tokens ({len(prompt)} in the prompt, {params.max_tokens} for the completion). "
                f"Please reduce the length of the prompt or of max_tokens.")
        capacity = self.block_manager.num_blocks * self.block_manager.block_size
        if total > capacity:
            raise PromptTooLongError(f"the request needs {total} KV slots, more than the whole pool of "
                                     f"{capacity} ({self.block_manager.num_blocks} blocks); raise num_blocks")
        return list(prompt)

    def add_request(self, prompt_ids: str | list[int], params: SamplingParams | None = None,
                    request_id: str | None = None) -> str:
        """Queue a prompt (token ids, or text with a tokenizer); returns the request id."""
        params = SamplingParams() if params is None else params
        prompt_ids = self.check_request(prompt_ids, params)
        request_id = str(next(self._ids)) if request_id is None else str(request_id)
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use by an unfinished request")
        request = Request(request_id, prompt_ids, params)
        self.requests[request_id] = request
        self.scheduler.add(request)
        return request_id

    def abort(self, request_id: str) -> bool:
        """Stop a request and free its blocks; False if no unfinished request has this id."""
        request = self.requests.pop(str(request_id), None)
        if request is None:
            return False
        self.scheduler.finish(request, "abort")
        return True

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    # ---- decoding -----------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule, run the model once, sample; outputs of the requests that got a token in this step."""
        schedule = self.scheduler.schedule()
        self.last_schedule = schedule
        if not schedule.chunks:
            return []
        self.num_steps += 1
        self.runner.copy_blocks(schedule.copies)
        sampling = [c.request for c in schedule.chunks if c.samples]  # decided before the counts advance
        logits = self.runner.execute(schedule.chunks)  # (len(sampling), vocab)
        tokens = sample_tokens(logits, [r.params for r in sampling], [r.generator for r in sampling])
        for chunk in schedule.chunks:
            chunk.request.num_computed_tokens += chunk.num_tokens
            self.block_manager.register_full_blocks(chunk.request)
        outputs = []
        for request, token in zip(sampling, tokens, strict=True):
            request.token_ids.append(token)
            reason = self._stop_reason(request, token)
            if reason is not None:
                self.scheduler.finish(request, reason)
                del self.requests[request.request_id]
            outputs.append(RequestOutput(
                request.request_id, [token], request.output_ids, request.finished, request.finish_reason,
                request.stable_text if self.tokenizer is not None else None, request.num_prompt_tokens,
                request.num_cached_tokens))
        return outputs

    def _stop_reason(self, request: Request, token: int) -> str | None:
        """Why the request ends with this token (None: it goes on); keeps its text up to date."""
        p, reason = request.params, None
        output = request.output_ids
        if token in p.stop_token_ids:
            reason, output = "stop", output[:-1]  # the stop token has no text
        if self.tokenizer is not None:
            request.text = self.tokenizer.decode(output)
            cuts = [i for i in (request.text.find(s) for s in p.stop_strings) if i >= 0]
            if cuts:
                request.text, reason = request.text[:min(cuts)], "stop"  # the stop string is not returned
        full = request.num_output_tokens >= p.max_tokens or len(request.token_ids) >= self.max_model_len
        if reason is None and full:
            reason = "length"
        if self.tokenizer is not None:
            request.stable_text = request.text if reason else self._stable_prefix(request)
        return reason

    @staticmethod
    def _stable_prefix(request: Request) -> str:
        """The text minus what may still change: an unfinished UTF-8 character, a possible stop string start."""
        text = request.text.rstrip("\ufffd")
        hold = max((len(s) for s in request.params.stop_strings), default=1) - 1
        text = text[:len(text) - hold] if hold else text
        return text if text.startswith(request.stable_text) else request.stable_text

    def generate(self, prompts: list, params: SamplingParams | list[SamplingParams] | None = None) -> list[list[int]]:
        """New token ids of each prompt (prompt excluded), all decoded together until they finish."""
        if isinstance(prompts, (str, torch.Tensor)) or not isinstance(prompts, (list, tuple)):
            raise TypeError(f"prompts must be a list of prompts (token id lists or strings), "
                            f"got {type(prompts).__name__}")
        params = params if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(params)} SamplingParams for {len(prompts)} prompts")
        params = [SamplingParams() if p is None else p for p in params]
        # every request is checked before any is queued
        prompts = [self.check_request(prompt, p) for prompt, p in zip(prompts, params, strict=True)]
        ids = [self.add_request(prompt, p) for prompt, p in zip(prompts, params, strict=True)]
        results: dict[str, list[int]] = {}
        while len(results) < len(ids):
            for out in self.step():
                if out.finished:
                    results[out.request_id] = out.token_ids
            if not self.last_schedule.chunks:
                raise RuntimeError("the scheduler could not run any request (the pool is too small)")
        return [results[i] for i in ids]

    # ---- statistics ---------------------------------------------------------------------------------
    def kv_usage(self) -> tuple[int, int]:
        """(token slots holding computed keys, slots of the blocks running requests hold)."""
        used = sum(r.num_computed_tokens for r in self.scheduler.running)
        return used, self.block_manager.num_used_blocks * self.block_manager.block_size
