"""Chat clients: one interface over any OpenAI-compatible endpoint and the in-process engine.

`make_client()` picks the implementation: a base URL (argument or OPENAI_BASE_URL) means HTTP through
the official openai SDK; otherwise the built-in engine runs the model in this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qcoder.engine.tool_parsers import ToolCall
from qcoder.errors import QcoderError

# `on_delta("")` comes at least this often while a streamed reply shows nothing (a long prefill), so that a caller
# can stop it, at its time limit for one
HEARTBEAT_S = 0.5
DEADLINE = "deadline"  # the finish reason of a reply cut off at its caller's deadline (left out of a batch)


@dataclass
class ChatResponse:
    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})


class ChatClient:
    """Base: `chat(messages, tools=None, *, on_delta=None, json_schema=None, **sampling) -> ChatResponse`.
    `on_delta(text)`: each piece of a streamed reply, and `""` as a heartbeat while none comes.
    `json_schema`: the reply must be JSON valid against it (response_format json_schema; the built-in engine
    enforces it while decoding)."""

    model: str

    def chat(self, messages, tools=None, *, on_delta: Callable[[str], None] | None = None, json_schema: dict | None = None,
             **sampling) -> ChatResponse:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens in `text`; a chars/4 estimate unless the client knows the model's tokenizer."""
        return len(text) // 4 + 1

    def sample(self, messages, n: int, *, prefix: str = "", json_schema: dict | None = None,
               deadline: float | None = None, **sampling) -> list[ChatResponse]:
        """`n` independent replies to the same messages, without tools (the repair path's candidates). `prefix` is
        how the replies should begin; clients that can force it (the built-in engine, qcoder serve, vLLM) do, the
        others ignore it. `deadline` (time.monotonic()): the built-in engine stops decoding there and leaves out
        the replies it had not finished; an endpoint's replies are waited for."""
        return _parallel(lambda: self.chat(messages, json_schema=json_schema, **sampling), n)

    def forks(self, messages, n: int, *, prefix: str = "", start: int = 0, max_tokens: int = 512,
              stop: list[str] = (), deadline: float | None = None, **sampling) -> list[ChatResponse]:
        """Replies `start` to `start + n - 1` of: the greedy reply, then replies forced off it at its closest calls
        (at each of the tokens where the model's runner-up was likeliest, that runner-up, then greedy again), closest
        first; fewer when it has no more. Asked to rewrite code with a bug, small models mostly copy it back when
        sampled (150 of 400 candidates in one suite run); where they hesitate is where a change is likeliest to be
        wanted, and each fork is a different change. The greedy reply is kept for the next call's forks. Clients
        that cannot force a beginning sample instead. `deadline`: as for `sample`."""
        stop = list(stop)
        cache = self.__dict__.setdefault("_greedy_replies", {})
        key = (repr(messages), prefix, max_tokens, tuple(stop))
        if key not in cache:
            found = self._greedy(messages, prefix, max_tokens, stop, deadline)
            if found is None:
                return self.sample(messages, n, prefix=prefix, max_tokens=max_tokens, stop=stop, deadline=deadline,
                                   **sampling)
            if found[0].finish_reason == DEADLINE:
                return []
            self.__dict__["_greedy_replies"] = cache = {**dict(list(cache.items())[-7:]), key: found}  # a few prompts
        greedy, steps = cache[key]
        points = _closest_calls(steps, start + n - 1)[max(0, start - 1):]
        fork = lambda point: self._fork(messages, prefix, steps[:point[0]], point[1], max_tokens, stop,  # noqa: E731
                                        deadline)
        forked = _parallel(fork, len(points), len(points), points) if points else []
        return ([greedy] if start == 0 else []) + [reply for reply in forked if reply.finish_reason != DEADLINE]

    def can_fork(self) -> bool:
        """Whether `forks` forks (else it samples)."""
        return False

    def _greedy(self, messages, prefix: str, max_tokens: int, stop: list[str],
                deadline: float | None = None) -> tuple[ChatResponse, list] | None:
        """The greedy reply and its steps, one per token: (token, text, [(runner-up, its text, logprob)]); None
        where the client cannot fork."""
        return None

    def _fork(self, messages, prefix: str, steps: list, runner_up: tuple, max_tokens: int, stop: list[str],
              deadline: float | None = None):
        """The greedy reply from `prefix` + the tokens of `steps` + `runner_up` on."""
        raise NotImplementedError


class OpenAIClient(ChatClient):
    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 *, retries: int = 4, backoff: float = 1.0, timeout: float = 600.0):
        import openai

        self.model = model or os.environ.get("OPENAI_MODEL") or "default"
        self.retries = retries
        self.backoff = backoff
        # The SDK's own retries are off: ours cover streaming too and are visible in one place.
        self._client = openai.OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
            max_retries=0,
            timeout=timeout,
        )

    def chat(self, messages, tools=None, *, on_delta=None, json_schema=None, **sampling) -> ChatResponse:
        kwargs = self._kwargs(messages, tools, sampling, json_schema)
        return self._with_retries(lambda: self._stream(kwargs, on_delta) if on_delta else self._once(kwargs))

    def _kwargs(self, messages, tools, sampling, json_schema=None, begin: str = "") -> dict:
        """The request's arguments; `begin`: the text the reply continues from, sent as a final assistant message
        with vLLM's `continue_final_message` (only for endpoints that `_continues()`)."""
        if begin:
            messages = [*messages, {"role": "assistant", "content": begin}]
        kwargs = {"model": self.model, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "answer", "schema": json_schema, "strict": True}}
        from qcoder.engine.sampling_fields import EXTRA_SAMPLING_FIELDS, OPENAI_SAMPLING_FIELDS, check_sampling_names

        check_sampling_names(sampling)
        kwargs.update({k: v for k, v in sampling.items() if k in OPENAI_SAMPLING_FIELDS and v is not None})
        extra = {k: v for k, v in sampling.items() if k in EXTRA_SAMPLING_FIELDS and v is not None}
        if begin:
            extra.update(continue_final_message=True, add_generation_prompt=False)
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def sample(self, messages, n: int, *, prefix: str = "", json_schema=None, deadline=None,
               **sampling) -> list[ChatResponse]:
        """One request with `n` choices; an endpoint that returns fewer (or rejects `n`) is topped up with
        parallel single requests. `prefix` is forced where the endpoint continues a final assistant message."""
        import openai

        begin = prefix if self._continues() else ""  # others would answer a final assistant message anew
        kwargs = self._kwargs(messages, None, sampling, json_schema, begin)
        try:
            completion = self._with_retries(lambda: self._client.chat.completions.create(**kwargs, n=n))
            replies = [self._response(completion, choice) for choice in completion.choices[:n]]
            for reply in replies[1:]:  # the usage covers all choices: count it once
                reply.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        except QcoderError as exc:
            if not isinstance(exc.__cause__, openai.BadRequestError):
                raise
            replies = []
        missing = n - len(replies)
        replies += _parallel(lambda: self._with_retries(lambda: self._once(kwargs)), missing) if missing else []
        for reply in replies:
            reply.content = begin + reply.content
        return replies

    def can_fork(self) -> bool:
        return self._continues()

    def _continues(self) -> bool:
        """Whether the endpoint continues a final assistant message (qcoder serve and vLLM do)."""
        if not hasattr(self, "_continuing"):
            try:
                self._continuing = any(m.owned_by in ("qcoder", "vllm") for m in self._client.models.list())
            except Exception:  # noqa: BLE001 - no model list: a plain OpenAI-compatible endpoint
                self._continuing = False
        return self._continuing

    def _greedy(self, messages, prefix, max_tokens, stop, deadline=None):  # an endpoint is waited for
        if not self._continues():
            return None
        kwargs = self._kwargs(messages, None, {"temperature": 0, "max_tokens": max_tokens, "stop": stop or None},
                              begin=prefix)
        completion = self._with_retries(lambda: self._client.chat.completions.create(**kwargs, logprobs=True,
                                                                                   top_logprobs=4))
        choice = completion.choices[0]
        steps = [(t.token, t.token, [(o.token, o.token, o.logprob) for o in t.top_logprobs or []])
                 for t in (choice.logprobs.content if choice.logprobs else None) or []]
        reply = self._response(completion, choice)
        reply.content = prefix + reply.content
        return reply, steps

    def _fork(self, messages, prefix, steps, runner_up, max_tokens, stop, deadline=None):
        forced = prefix + "".join(text for _, text, _ in steps) + runner_up[1]
        kwargs = self._kwargs(messages, None,
                              {"temperature": 0, "max_tokens": max(1, max_tokens - len(steps) - 1), "stop": stop or None},
                              begin=forced)
        reply = self._with_retries(lambda: self._once(kwargs))
        reply.content = forced + reply.content
        return reply

    def _with_retries(self, call):
        import openai

        for attempt in range(self.retries + 1):
            try:
                return call()
            except (openai.RateLimitError, openai.APIConnectionError, openai.InternalServerError) as exc:
                if attempt == self.retries:
                    raise QcoderError(f"model endpoint failed after {attempt + 1} attempts: {exc}") from exc
                time.sleep(self.backoff * 2**attempt)
            except openai.APIStatusError as exc:
                raise QcoderError(f"model endpoint error {exc.status_code}: {exc.message}") from exc

    def _once(self, kwargs) -> ChatResponse:
        completion = self._client.chat.completions.create(**kwargs)
        return self._response(completion, completion.choices[0])

    @staticmethod
    def _response(completion, choice) -> ChatResponse:
        message = choice.message
        calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                 for c in message.tool_calls or []]
        usage = completion.usage
        return ChatResponse(
            content=message.content or "",
            reasoning=getattr(message, "reasoning_content", None),
            tool_calls=calls,
            finish_reason=choice.finish_reason or "stop",
            usage={"prompt_tokens": usage.prompt_tokens if usage else 0,
                   "completion_tokens": usage.completion_tokens if usage else 0},
        )

    def _stream(self, kwargs, on_delta) -> ChatResponse:
        stream = self._client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        content, reasoning, finish = [], [], "stop"
        calls: dict[int, dict] = {}  # index -> {"id", "name", "arguments"} assembled from fragments
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for chunk in stream:
            if chunk.usage:
                usage = {"prompt_tokens": chunk.usage.prompt_tokens, "completion_tokens": chunk.usage.completion_tokens}
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            if choice.finish_reason:
                finish = choice.finish_reason
            if getattr(delta, "reasoning_content", None):
                reasoning.append(delta.reasoning_content)
            if delta.content:
                content.append(delta.content)
            on_delta(delta.content or "")  # an empty one (a keep-alive during prefill) is a heartbeat
            for frag in delta.tool_calls or []:
                slot = calls.setdefault(frag.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = frag.id or slot["id"]
                if frag.function:
                    slot["name"] += frag.function.name or ""
                    slot["arguments"] += frag.function.arguments or ""
        tool_calls = [ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
                      for i, c in sorted(calls.items())]
        return ChatResponse("".join(content), "".join(reasoning) or None, tool_calls, finish, usage)


class EngineClient(ChatClient):
    """The built-in engine, in this process. Heavy imports happen only when one is made.

    Safe to call from any number of threads at once: every request goes into the engine's one scheduler through
    an AsyncLLMEngine (the step loop in one thread, as `qcoder serve` runs it), so concurrent calls are batched
    together instead of racing on the engine. `on_delta` is still called in the caller's thread. The client
    drives its engine: nothing else may step that engine while the client is in use.

    With tools offered, every reply is constrained (structured decoding) to a final answer or text followed by
    exactly one call of an offered tool with schema-valid arguments; `constrain_tools=False` turns that off.
    """

    def __init__(self, model: str | None = None, *, constrain_tools: bool = True, engine_opts: dict | None = None):
        """engine_opts: LLMEngine options (e.g. speculative="ngram")."""
        import qcoder
        from qcoder.model.registry import DEFAULT_MODEL

        self._start(qcoder.LLM(model or DEFAULT_MODEL, **(engine_opts or {})), model or DEFAULT_MODEL, constrain_tools)

    @classmethod
    def from_llm(cls, llm, model: str, *, constrain_tools: bool = True) -> EngineClient:
        """A client around an LLM that is already loaded (the client drives its engine from then on)."""
        client = cls.__new__(cls)
        client._start(llm, model, constrain_tools)
        return client

    def _start(self, llm, model: str, constrain_tools: bool) -> None:
        import asyncio
        import itertools
        import threading

        from qcoder.engine.async_engine import AsyncLLMEngine

        self.model, self._llm, self.constrain_tools = model, llm, constrain_tools
        self._engine = AsyncLLMEngine(llm.engine)
        self._loop = asyncio.new_event_loop()  # where the engine's streams are read; one thread for all callers
        threading.Thread(target=self._loop.run_forever, name="qcoder-client", daemon=True).start()
        self._ids = itertools.count()
        self._prompt_lock = threading.Lock()  # template rendering and encoding: cheap, kept to one thread at a time

    def chat(self, messages, tools=None, *, on_delta=None, json_schema=None, **sampling) -> ChatResponse:
        from qcoder.engine.assistant import finish_reason, parse_assistant
        from qcoder.engine.sampling import SamplingParams, check_sampling_names
        from qcoder.engine.structured import Constraint

        check_sampling_names(sampling)
        params = SamplingParams(**{k: v for k, v in sampling.items() if v is not None})
        if json_schema is not None:
            params.constraint = Constraint.json_schema(json_schema)
        elif tools and self.constrain_tools:
            params.constraint = self._answer_or_one_call(tools)
        engine = self._llm.engine
        with self._prompt_lock:
            # The history may hold a call whose arguments are not JSON (the model wrote it so): shown as written.
            ids = self._llm.chat_prompt_ids(messages, tools, strict_arguments=False)
        text, reason, generated = self._generate(ids, params, on_delta)
        reply = parse_assistant(text, engine.tool_parser, tools, engine.opens_thinking(ids))
        return ChatResponse(reply.content or "", reply.reasoning, list(reply.tool_calls),
                            finish_reason(reason, bool(reply.tool_calls)),
                            {"prompt_tokens": len(ids), "completion_tokens": generated})

    def _generate(self, ids: list[int], params, on_delta, tokens: list | None = None,
                  deadline: float | None = None) -> tuple[str, str | None, int]:
        """Hand the request to the engine's loop; collect its pieces here, in the caller's thread (and into
        `tokens`, when given, each generated token as (id, its Logprobs or None)). At `deadline` the request is
        aborted and what came so far returned, with the finish reason DEADLINE."""
        import asyncio
        import queue

        pieces: queue.Queue = queue.Queue()
        request_id = f"client-{next(self._ids)}"

        async def pump():
            try:
                async for out in self._engine.generate(request_id, ids, params):
                    pieces.put(out)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread below
                pieces.put(exc)
                return
            pieces.put(None)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        text, reason, generated = [], None, 0
        try:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    return "".join(text), DEADLINE, generated
                wait = HEARTBEAT_S if deadline is None else min(HEARTBEAT_S, max(0.0, deadline - time.monotonic()))
                try:
                    out = pieces.get(timeout=wait)
                except queue.Empty:  # nothing yet (a long prefill): the heartbeat lets the caller give up
                    if on_delta is not None:
                        on_delta("")
                    continue
                if out is None:
                    break
                if isinstance(out, BaseException):
                    raise out
                text.append(out.text_delta)
                if tokens is not None:
                    tokens += zip(out.new_token_ids, out.logprobs or [None] * len(out.new_token_ids), strict=True)
                reason, generated = out.finish_reason or reason, generated + len(out.new_token_ids)
                if on_delta is not None and out.text_delta:
                    on_delta(out.text_delta)
        finally:
            future.cancel()  # the caller gave up (an exception, Ctrl-C): leaving the stream aborts the request
        return "".join(text), reason, generated

    def _answer_or_one_call(self, tools):
        """The agent's constraint; None (free text, parsed leniently) for tool schemas the compiler rejects."""
        from qcoder.engine.structured import Constraint

        constraint = Constraint.tool_call(tools, allow_text=True)
        try:
            self._llm.engine.structured.check(constraint)
        except QcoderError:
            return None
        return constraint

    def count_tokens(self, text: str) -> int:
        with self._prompt_lock:
            return len(self._llm.tokenizer.encode(text))

    def close(self) -> None:
        """Stop the engine's loop and this client's thread (idempotent)."""
        engine, self._engine = getattr(self, "_engine", None), None
        if engine is not None:
            engine.shutdown()
            self._loop.call_soon_threadsafe(self._loop.stop)

    def __del__(self):  # a dropped client (the TUI's /model switch) must not keep its model alive in its threads
        self.close()

    def sample(self, messages, n: int, *, prefix: str = "", json_schema=None, deadline=None,
               **sampling) -> list[ChatResponse]:
        """`n` sequences of one prompt decoded as one batch (a seed would make them identical: dropped). Each
        reply is forced to begin with `prefix` (e.g. "```python\ndef name("), which keeps small models from
        answering with a copy of the test instead of the function."""
        from qcoder.engine.reasoning import split_reasoning
        from qcoder.engine.sampling import SamplingParams, check_sampling_names
        from qcoder.engine.structured import Constraint

        check_sampling_names(sampling)
        params = SamplingParams(**{k: v for k, v in sampling.items() if v is not None and k != "seed"})
        if json_schema is not None:
            params.constraint = Constraint.json_schema(json_schema)
        ids = self._prefixed_ids(messages, prefix)
        # Through the client's engine loop like every request (stepping the engine from here as well raced
        # with that loop). All n in flight: one batch, and the prompt is computed once (the scheduler holds the
        # others until it is cached).
        outs = _parallel(lambda: self._generate(ids, params, None, deadline=deadline), n, most=n)
        replies = []
        for text, reason, generated in (out for out in outs if out[1] != DEADLINE):
            reasoning, content = split_reasoning(text, starts_in_thinking=self._llm.engine.opens_thinking(ids))
            replies.append(ChatResponse(prefix + content, reasoning, [], reason or "stop",
                                        {"prompt_tokens": len(ids), "completion_tokens": generated}))
        return replies

    def can_fork(self) -> bool:
        return True

    def _greedy(self, messages, prefix, max_tokens, stop, deadline=None):
        from qcoder.engine.sampling import SamplingParams

        ids, tokens = self._prefixed_ids(messages, prefix), []
        text, reason, generated = self._generate(ids, SamplingParams(temperature=0, logprobs=4, max_tokens=max_tokens,
                                                                     stop=stop), None, tokens, deadline)
        decode = lambda token: self._llm.tokenizer.decode([token])  # noqa: E731
        steps = [(token, decode(token), [(other, decode(other), lp) for other, lp in (logprobs[1] if logprobs else [])])
                 for token, logprobs in tokens]
        return ChatResponse(prefix + text, None, [], reason or "stop",
                            {"prompt_tokens": len(ids), "completion_tokens": generated}), steps

    def _fork(self, messages, prefix, steps, runner_up, max_tokens, stop, deadline=None):
        from qcoder.engine.sampling import SamplingParams

        ids, forced = self._prefixed_ids(messages, prefix), [token for token, _, _ in steps] + [runner_up[0]]
        rest, reason, generated = self._generate(ids + forced, SamplingParams(
            temperature=0, max_tokens=max(1, max_tokens - len(forced)), stop=stop), None, deadline=deadline)
        return ChatResponse(prefix + self._llm.tokenizer.decode(forced) + rest, None, [], reason or "stop",
                            {"prompt_tokens": len(ids) + len(forced), "completion_tokens": generated})

    def _prefixed_ids(self, messages, prefix: str) -> list[int]:
        with self._prompt_lock:
            return self._llm.chat_prompt_ids(messages) + self._llm.tokenizer.encode(prefix)


def _closest_calls(steps: list, most: int) -> list[tuple[int, tuple]]:
    """(position, runner-up): the greedy steps' likeliest runners-up, at most one per position, best first. Not past
    a closing fence (what follows the code is not code), and none that changes only whitespace or that spells the
    same text in other tokens (" email" for " em", "ail": the fork would come back as the greedy reply)."""
    pieces = [text for _, text, _ in steps]
    calls = []
    for at, (_, text, runners_up) in enumerate(steps):
        if "```" in "".join(pieces[:at]).lstrip("`"):
            break
        rest = "".join(pieces[at:])
        for other in runners_up:
            if other[1].strip() != text.strip() and not rest.startswith(other[1]):
                calls.append((other[2], -at, other))
                break
    return [(-at, other) for _, at, other in sorted(calls, reverse=True)[:most]]


def _parallel(request, n: int, most: int = 8, items: list | None = None) -> list:
    """`n` calls of `request()` (or of `request(item)` for each of `items`), `most` at a time, on threads (for
    endpoints without `n`, and for the engine's batch)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(n, most)) as pool:
        return list(pool.map(request, items) if items is not None else pool.map(lambda _: request(), range(n)))


def make_client(
    model: str | None = None, base_url: str | None = None, api_key: str | None = None, engine_opts: dict | None = None
) -> ChatClient:
    """HTTP when a base URL is given (or OPENAI_BASE_URL is set), else the in-process engine (with engine_opts)."""
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if base_url:
        return OpenAIClient(model=model, base_url=base_url, api_key=api_key)
    return EngineClient(model or os.environ.get("OPENAI_MODEL"), engine_opts=engine_opts)
