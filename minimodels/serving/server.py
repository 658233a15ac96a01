"""An OpenAI-compatible HTTP server over LLMEngine (FastAPI + uvicorn).

    POST /v1/completions        {"model", "prompt", "max_tokens", "temperature", "top_p", "stop", "stream", ...}
    POST /v1/chat/completions   {"model", "messages": [{"role", "content"}], ...}  (chat.apply_chat_template)
    GET  /v1/models             the one model served
    GET  /health

`stream: true` answers with server-sent events, one `data: {chunk}` per new piece of text, ending with
`data: [DONE]`. A client that disconnects has its requests aborted (their blocks freed). Bad input gets
an OpenAI-style error body with a 4xx status: 400 for invalid parameters, malformed JSON and prompts
longer than the context (code "context_length_exceeded"), 404 for an unknown model or route.

    python -m minimodels.serving --model course-llama --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from minimodels.serving.async_engine import AsyncEngine, EngineError
from minimodels.serving.chat import CHAT_STOP, apply_chat_template, message_text
from minimodels.serving.engine import LLMEngine, PromptTooLongError, RequestOutput
from minimodels.serving.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    error_response,
    new_id,
    now,
    usage,
    validation_message,
)
from minimodels.serving.sampling import ParameterError, SamplingParams


class BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


END_OF_TEXT = ("<|endoftext|>", "</s>", "<eos>")


def end_of_text_ids(tokenizer) -> tuple[int, ...]:
    """Ids of the tokenizer's end-of-text special tokens (`special_ids`, or `eos_token_id`): they end an answer."""
    special = getattr(tokenizer, "special_ids", None) or {}
    ids = [special[name] for name in END_OF_TEXT if name in special]
    eos = getattr(tokenizer, "eos_token_id", None)
    return tuple(ids + ([eos] if isinstance(eos, int) else []))


def sampling_params(body, max_tokens: int | None, stop_extra: tuple[str, ...] = (),
                    stop_token_ids: tuple[int, ...] = ()) -> SamplingParams:
    """SamplingParams from a request body; a 400 naming the parameter when one is invalid."""
    if (problem := body.unsupported()) is not None:
        raise BadRequest(400, problem[1], problem[0])
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if body.temperature > 2:
        raise BadRequest(400, f"temperature={body.temperature}: must be between 0 and 2", "temperature")
    try:
        return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                              top_k=body.top_k, seed=body.seed, stop=stop + list(stop_extra),
                              stop_token_ids=stop_token_ids)
    except ParameterError as err:
        raise BadRequest(400, str(err).removeprefix("SamplingParams."), err.param) from None


class OpenAIServer:
    """The routes, over one AsyncEngine; `app` is the FastAPI application."""

    def __init__(self, engine: LLMEngine, model_name: str):
        if engine.tokenizer is None:
            raise ValueError("the server needs an engine with a tokenizer (text in, text out)")
        self.engine, self.model_name = engine, model_name
        self.stop_token_ids = end_of_text_ids(engine.tokenizer)
        self.async_engine = AsyncEngine(engine)
        self.created = now()
        self.app = self._build_app()

    # ---- requests -> engine --------------------------------------------------------------------------
    def _check_model(self, name: str) -> None:
        if name != self.model_name:
            raise BadRequest(404, f"The model `{name}` does not exist. This server serves `{self.model_name}`.",
                             "model", "model_not_found")

    def _submit(self, prompts: list, params: SamplingParams, prompt_param: str) -> tuple[list[str], asyncio.Queue]:
        """Submit every prompt to one queue; on bad input abort those already submitted and raise.

        prompt_param: the request field holding the prompt ("prompt" or "messages"), named in errors."""
        queue, ids = asyncio.Queue(), []
        try:
            for prompt in prompts:
                ids.append(self.async_engine.submit(prompt, params, queue)[0])
        except PromptTooLongError as err:
            self._abort(ids)
            raise BadRequest(400, str(err), prompt_param, "context_length_exceeded") from None
        except (ParameterError, TypeError, ValueError) as err:
            self._abort(ids)
            param = getattr(err, "param", prompt_param)
            raise BadRequest(400, str(err), prompt_param if param == "prompt" else param) from None
        return ids, queue

    def _abort(self, ids) -> None:
        for request_id in ids:
            self.async_engine.abort(request_id)

    @staticmethod
    async def _next(queue: asyncio.Queue) -> RequestOutput:
        item = await queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def _collect(self, ids: list[str], queue: asyncio.Queue, request: Request) -> dict[str, RequestOutput]:
        """The final output of every request; aborts them all if the client disconnects meanwhile."""
        finals: dict[str, RequestOutput] = {}
        try:
            while len(finals) < len(ids):
                try:
                    out = await asyncio.wait_for(self._next(queue), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        break
                    continue
                if out.finished:
                    finals[out.request_id] = out
        finally:
            self._abort([i for i in ids if i not in finals])
        return finals

    async def _events(self, ids: list[str], queue: asyncio.Queue, text_chunk, finish_chunk, usage_chunk,
                      first: tuple[dict, ...] = ()):
        """Server-sent events: chunks of new text per prompt, a finish chunk each, usage (or None), [DONE]."""
        index = {request_id: i for i, request_id in enumerate(ids)}
        sent = dict.fromkeys(ids, "")
        finals: dict[str, RequestOutput] = {}
        try:
            for event in first:
                yield f"data: {json.dumps(event)}\n\n"
            while len(finals) < len(ids):
                try:
                    out = await self._next(queue)
                except EngineError as err:
                    yield f"data: {json.dumps({'error': {'message': str(err), 'type': 'server_error'}})}\n\n"
                    return
                delta = out.text[len(sent[out.request_id]):]
                sent[out.request_id] = out.text
                if delta:
                    yield f"data: {json.dumps(text_chunk(index[out.request_id], delta))}\n\n"
                if out.finished:
                    finals[out.request_id] = out
                    yield f"data: {json.dumps(finish_chunk(index[out.request_id], out.finish_reason))}\n\n"
            if usage_chunk is not None:
                prompt = sum(o.num_prompt_tokens for o in finals.values())
                completion = sum(len(o.token_ids) for o in finals.values())
                yield f"data: {json.dumps(usage_chunk(usage(prompt, completion)))}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # also on a disconnect: the stream is cancelled here
            self._abort([i for i in ids if i not in finals])

    # ---- routes ---------------------------------------------------------------------------------------
    @staticmethod
    def _wants_usage(body) -> bool:
        return bool(body.stream_options and body.stream_options.include_usage)

    async def completions(self, body: CompletionRequest, request: Request):
        self._check_model(body.model)
        params = sampling_params(body, body.max_tokens, stop_token_ids=self.stop_token_ids)
        ids, queue = self._submit(body.prompts(), params, "prompt")
        head = {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": self.model_name}

        def choice(i, text, finish=None):
            return head | {"choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}]}

        if body.stream:
            usage_chunk = (lambda u: head | {"choices": [], "usage": u}) if self._wants_usage(body) else None
            return StreamingResponse(self._events(ids, queue, choice, lambda i, r: choice(i, "", r), usage_chunk),
                                     media_type="text/event-stream")
        finals = await self._collect(ids, queue, request)
        if len(finals) < len(ids):
            return JSONResponse(status_code=499, content={})  # the client is gone; nobody reads this
        outs = [finals[i] for i in ids]
        return head | {
            "choices": [{"index": i, "text": o.text, "logprobs": None, "finish_reason": o.finish_reason}
                        for i, o in enumerate(outs)],
            "usage": usage(sum(o.num_prompt_tokens for o in outs), sum(len(o.token_ids) for o in outs))}

    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        self._check_model(body.model)
        try:
            prompt = apply_chat_template([{"role": m.role, "content": message_text(m.content or "")}
                                          for m in body.messages])
        except ValueError as err:
            raise BadRequest(400, str(err), "messages") from None
        max_tokens = body.max_completion_tokens or body.max_tokens
        if max_tokens is None:  # as OpenAI and vLLM: the rest of the context
            max_tokens = max(1, self.engine.max_model_len - len(self.engine.tokenizer.encode(prompt)))
        params = sampling_params(body, max_tokens, CHAT_STOP, self.stop_token_ids)
        ids, queue = self._submit([prompt], params, "messages")
        head = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", "created": now(),
                "model": self.model_name}

        def delta(i, content, finish=None):
            return head | {"choices": [{"index": i, "delta": content, "logprobs": None, "finish_reason": finish}]}

        if body.stream:
            usage_chunk = (lambda u: head | {"choices": [], "usage": u}) if self._wants_usage(body) else None
            return StreamingResponse(
                self._events(ids, queue, lambda i, text: delta(i, {"content": text}), lambda i, r: delta(i, {}, r),
                             usage_chunk, first=(delta(0, {"role": "assistant", "content": ""}),)),
                media_type="text/event-stream")
        finals = await self._collect(ids, queue, request)
        if not finals:
            return JSONResponse(status_code=499, content={})
        out = finals[ids[0]]
        return head | {"object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                                    "logprobs": None, "finish_reason": out.finish_reason}],
                       "usage": usage(out.num_prompt_tokens, len(out.token_ids))}

    def models(self):
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": self.created,
                                             "owned_by": "minimodels", "max_model_len": self.engine.max_model_len}]}

    def _build_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app):
            self.async_engine.start()
            yield
            self.async_engine.stop()

        app = FastAPI(title="minimodels OpenAI-compatible server", lifespan=lifespan)
        app.state.server = self
        app.post("/v1/completions")(self.completions)
        app.post("/v1/chat/completions")(self.chat_completions)
        app.get("/v1/models")(self.models)
        app.get("/health")(lambda: {"status": "ok"})

        @app.exception_handler(BadRequest)
        async def bad_request(request, err: BadRequest):
            return error_response(err.status, err.message, param=err.param, code=err.code)

        @app.exception_handler(RequestValidationError)
        async def invalid(request, err: RequestValidationError):
            message, param = validation_message(err.errors())
            return error_response(400, message, param=param)

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request, err: StarletteHTTPException):
            return error_response(err.status_code, f"{err.detail} ({request.method} {request.url.path})")

        @app.exception_handler(EngineError)
        async def engine_error(request, err: EngineError):
            return error_response(500, str(err), "server_error")

        return app


def create_app(engine: LLMEngine, model_name: str = "course-llama") -> FastAPI:
    """The FastAPI app serving `engine` under `model_name`; the engine thread runs while the app is up."""
    return OpenAIServer(engine, model_name).app


class BackgroundServer:
    """uvicorn serving `app` in a daemon thread, on host and a free port (port=0), until stop().

    The socket is bound before uvicorn starts, so the port is known at once and nobody can take it.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {host}:{self.port} within {timeout} s")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
