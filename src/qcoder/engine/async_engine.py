"""AsyncLLMEngine: the engine's step loop in one background thread, streams for asyncio callers (the server).

The engine itself is single-threaded: only the loop thread touches it. Callers hand requests and aborts
to the thread through a locked inbox; the thread feeds each request's asyncio.Queue with
`loop.call_soon_threadsafe`. The thread sleeps on an Event while there is no work.

    async for out in aengine.generate("r1", prompt_ids, params):
        send(out.text_delta)

Leaving the `async for` early (client gone, task cancelled) aborts the request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from qcoder.engine.engine import LLMEngine, RequestOutput
from qcoder.engine.sampling import SamplingParams


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue

    def put(self, item) -> bool:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
            return True
        except RuntimeError:  # the caller's event loop is closed: nobody is listening any more
            return False


class AsyncLLMEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._lock = threading.Lock()
        self._new: list[tuple[str, list[int], SamplingParams, _Stream]] = []
        self._aborts: list[str] = []
        self._streams: dict[str, _Stream] = {}  # owned by the loop thread
        self._wakeup = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="qcoder-engine", daemon=True)
        self._thread.start()

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams | None = None
    ) -> AsyncIterator[RequestOutput]:
        """Stream a request's outputs; raises QcoderError at once for a prompt the engine cannot run."""
        self.engine.check_prompt(prompt_token_ids)
        params = params or self.engine.default_params()
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._new.append((request_id, list(prompt_token_ids), params, stream))
        self._wakeup.set()
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # aborted: the stream just ends
                    finished = True
                    return
                yield item
                if item.finished:
                    finished = True
                    return
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Stop a request; its blocks are freed before the next step and its stream ends."""
        with self._lock:
            self._aborts.append(request_id)
        self._wakeup.set()

    def stats(self) -> dict:
        with self._lock:
            pending = len(self._new)
        stats = self.engine.stats()  # plain reads of counters: safe enough for /metrics
        stats["waiting"] += pending
        return stats

    def shutdown(self) -> None:
        """Stop the loop once the step in progress is done, and wait for it: a process that exits while a step
        runs in torch's threads aborts ("terminate called without an active exception"). A step is bounded, but
        can be long: 512 prompt tokens of the 1.5B take 40 s on a slow 2-core CPU, past the 30 s this used to
        wait."""
        self._stopped = True
        self._wakeup.set()
        self._thread.join()

    # ----- the loop thread -----

    def _run(self) -> None:
        while not self._stopped:
            self._wakeup.clear()
            self._take_inbox()
            if not self.engine.has_unfinished():
                self._wakeup.wait()
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # a bug in a step: fail every request rather than hang them
                self._fail_all(exc)
                continue
            for out in outputs:
                stream = self._streams.get(out.request_id)
                if stream is None:
                    continue
                if out.finished:
                    del self._streams[out.request_id]
                if not stream.put(out) and not out.finished:
                    self.engine.abort(out.request_id)
                    self._streams.pop(out.request_id, None)
        with self._lock:
            new, self._new = self._new, []
        for _, _, _, stream in new:
            stream.put(RuntimeError("the engine was shut down"))
        self._fail_all(RuntimeError("the engine was shut down"))

    def _take_inbox(self) -> None:
        with self._lock:
            new, self._new = self._new, []
            aborts, self._aborts = self._aborts, []
        for request_id in aborts:
            self.engine.abort(request_id)
            stream = self._streams.pop(request_id, None)
            if stream is not None:
                stream.put(None)
        for request_id, prompt, params, stream in new:
            if request_id in aborts:
                stream.put(None)
                continue
            try:
                self.engine.add_request(request_id, prompt, params)
            except Exception as exc:  # e.g. a duplicate request id: report it to that caller only
                stream.put(exc)
                continue
            self._streams[request_id] = stream

    def _fail_all(self, exc: BaseException) -> None:
        for request_id, stream in list(self._streams.items()):
            self.engine.abort(request_id)
            stream.put(exc)
        self._streams.clear()
