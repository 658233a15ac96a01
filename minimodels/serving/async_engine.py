"""The engine loop of a server: `LLMEngine.step()` in a background thread, fed by asyncio request handlers.

HTTP handlers run on the event loop and must never wait for the model; the model must keep stepping
while requests arrive. So one thread owns the engine: handlers hand it new requests and aborts through a
lock-protected inbox (after checking the request, which reads no engine state), the thread adds them
between two steps (continuous batching), steps while any request is unfinished, and posts each
RequestOutput to the asyncio.Queue of its request through the handler's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
import uuid

from minimodels.serving.engine import LLMEngine, RequestOutput
from minimodels.serving.sampling import SamplingParams


class EngineError(RuntimeError):
    """The engine failed while running a request (a bug, not bad input): the request ends with a 500."""


class AsyncEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._inbox: list[tuple[str, list[int], SamplingParams]] = []
        self._aborts: list[str] = []
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---- called from the event loop ------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, prompt: str | list[int], params: SamplingParams, queue: asyncio.Queue | None = None
               ) -> tuple[str, asyncio.Queue]:
        """Queue a request; its RequestOutputs arrive on the returned queue. Bad input raises here."""
        prompt_ids = self.engine.check_request(prompt, params)
        request_id = uuid.uuid4().hex
        queue = asyncio.Queue() if queue is None else queue
        with self._lock:
            self._queues[request_id] = (asyncio.get_running_loop(), queue)
            self._inbox.append((request_id, prompt_ids, params))
        self._wake.set()
        return request_id, queue

    def abort(self, request_id: str) -> None:
        """Stop a request (the client went away): the engine frees its blocks before its next step."""
        with self._lock:
            self._queues.pop(request_id, None)
            self._aborts.append(request_id)
        self._wake.set()

    @property
    def num_pending(self) -> int:
        with self._lock:
            return len(self._inbox) + len(self._aborts)

    # ---- the engine thread ---------------------------------------------------------------------------
    def _post(self, request_id: str, item: RequestOutput | Exception, last: bool) -> None:
        with self._lock:
            target = self._queues.pop(request_id, None) if last else self._queues.get(request_id)
        if target is not None:
            loop, queue = target
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                pass

    def _run(self) -> None:
        engine = self.engine
        while not self._stopping:
            self._wake.clear()
            with self._lock:
                inbox, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, []
            for request_id, prompt_ids, params in inbox:
                engine.add_request(prompt_ids, params, request_id)
            for request_id in aborts:
                engine.abort(request_id)
            if not engine.has_unfinished_requests():
                self._wake.wait(timeout=1.0)
                continue
            try:
                outputs = engine.step()
            except Exception as err:  # fail every request rather than hang them; keep serving
                traceback.print_exc()
                for request_id in list(engine.requests):
                    engine.abort(request_id)
                    self._post(request_id, EngineError(f"the engine failed: {type(err).__name__}: {err}"), True)
                continue
            for out in outputs:
                self._post(out.request_id, out, out.finished)
        for request_id in list(engine.requests):  # shutting down
            engine.abort(request_id)
