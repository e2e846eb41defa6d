"""Running one API request on the engine: admission, its sequences, metrics, and abort on exit.

A request with `n` choices is `n` engine sequences per prompt (the prefix cache makes the extra ones
cheap). `Generation.outputs()` merges their outputs in arrival order. Whatever ends the
iteration early (a client that disconnects cancels it, an error, the server shutting down), the
`finally` aborts the sequences still running, so the engine frees their KV blocks at its next step.

A stream can ask `outputs()` for KEEPALIVE markers: one whenever its sequences have produced nothing for a
while (a long prompt still in prefill, a full batch still waiting), so that the route can send a chunk that
keeps clients with an idle timeout from giving up on it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

from qcoder.serve.state import ServerState

_request_counter = itertools.count()
KEEPALIVE = None  # what outputs(keepalive_s=...) yields after that many seconds without an output


class Generation:
    """The engine sequences of one request, each a (prompt ids, SamplingParams) pair; choice i is sequence i.

    Routes call `admit()` before the response starts, so a full server answers a real 429 (a stream
    cannot change its status once it began); from then the sequences count in flight until `release()`,
    which `outputs()` calls when it ends, whichever way, and the route calls when the response is over
    (a client may leave before `outputs()` ever starts).
    """

    def __init__(self, state: ServerState, sequences: list[tuple[list[int], object]], kind: str):
        self.state = state
        self.prompts = [prompt for prompt, _ in sequences]
        self.params = [params for _, params in sequences]
        base = f"{kind}-{next(_request_counter)}-{time.monotonic_ns():x}"
        self.request_ids = [f"{base}-{i}" for i in range(len(self.params))]
        self.arrival = time.monotonic()
        self._last_token_time: list[float | None] = [None] * len(self.params)
        self._finished = [False] * len(self.params)
        self._held = False  # our sequences are counted in state.in_flight

    def admit(self, *, admitted: bool = False) -> None:
        """Take room for the sequences now or raise APIError (429 full, 503 draining); no await in between."""
        if self._held:
            return
        self.state.check_capacity(len(self.params), admitted=admitted)
        self.state.in_flight += len(self.params)
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self.state.in_flight -= len(self.params)

    async def outputs(self, keepalive_s: float = 0) -> AsyncIterator[tuple[int, object] | None]:
        """(choice index, RequestOutput) as the engine produces them, until every sequence finished; with
        `keepalive_s` > 0 also KEEPALIVE each time that many seconds pass without one."""
        self.admit(admitted=True)
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        async def pump(index: int) -> None:
            try:
                async for out in self.state.async_engine.generate(
                    self.request_ids[index], self.prompts[index], self.params[index]
                ):
                    queue.put_nowait((index, out))
            except Exception as exc:  # handed to the consumer, which raises it in the request's context
                queue.put_nowait((index, exc))
            queue.put_nowait((index, done))

        tasks = [asyncio.create_task(pump(i)) for i in range(len(self.params))]
        getter = None  # one pending queue.get() across keepalive timeouts, so no output is ever dropped
        try:
            remaining = len(tasks)
            while remaining:
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                ready, _ = await asyncio.wait({getter}, timeout=keepalive_s if keepalive_s > 0 else None)
                if not ready:
                    yield KEEPALIVE
                    continue
                (index, item), getter = getter.result(), None
                if item is done:
                    remaining -= 1
                    continue
                if isinstance(item, Exception):
                    raise item
                self._observe(index, item)
                yield index, item
        finally:
            for task in [*tasks, getter]:
                if task is not None:
                    task.cancel()
            for index, request_id in enumerate(self.request_ids):
                if not self._finished[index]:
                    self.state.async_engine.abort(request_id)
            self.release()

    def _observe(self, index: int, out) -> None:
        metrics = self.state.metrics
        now = time.monotonic()
        tokens = len(out.new_token_ids)
        if tokens:
            last = self._last_token_time[index]
            if last is None:
                metrics.ttft.observe(now - self.arrival)
                metrics.prompt_tokens.inc(out.prompt_tokens)
                metrics.cached_prompt_tokens.inc(out.cached_tokens or 0)
            else:  # tokens that arrive together (e.g. a forced one) share the interval
                for _ in range(tokens):
                    metrics.itl.observe((now - last) / tokens)
            self._last_token_time[index] = now
            metrics.generation_tokens.inc(tokens)
        if out.finished:
            self._finished[index] = True
            metrics.e2e.observe(now - self.arrival)
