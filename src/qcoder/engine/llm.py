"""LLM, the offline wrapper around LLMEngine (`qcoder.LLM`): generate, stream and chat in the calling thread.

    llm = LLM("qwen2.5-coder-0.5b-instruct")
    print(llm.generate(["def fib(n):"], SamplingParams(max_tokens=32, temperature=0))[0].text)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from qcoder.engine.engine import LLMEngine, RequestOutput
from qcoder.engine.sampling import SamplingParams
from qcoder.engine.tokenizer import Tokenizer


@dataclass
class GenerationOutput:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class ChatOutput:
    content: str | None
    reasoning_content: str | None
    tool_calls: list = field(default_factory=list)  # list[qcoder.engine.tool_parsers.ToolCall]
    finish_reason: str | None = None  # "stop" | "length" | "tool_calls"
    prompt_tokens: int = 0
    completion_tokens: int = 0



class LLM:
    """Offline use: `LLM(model, **engine_opts).generate(prompts, params)`, `.stream(...)`, `.chat(messages)`.

    Runs the engine's step loop in the calling thread; not for use from several threads at once.
    """

    def __init__(self, model, **engine_opts):
        self.engine = LLMEngine(model, **engine_opts)
        self._ids = itertools.count()

    @classmethod
    def from_engine(cls, engine: LLMEngine) -> LLM:
        llm = cls.__new__(cls)
        llm.engine = engine
        llm._ids = itertools.count()
        return llm

    @property
    def tokenizer(self) -> Tokenizer:
        return self.engine.tokenizer

    def generate(self, prompts, params: SamplingParams | None = None) -> list[GenerationOutput]:
        """Generate for one prompt or a list of prompts (text or token ids), all batched together."""
        if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        results = dict(self.generate_as_completed(prompts, params))
        return [results[i] for i in range(len(prompts))]

    def generate_as_completed(self, prompts: list, params: SamplingParams | None = None):
        """Yield (index into prompts, GenerationOutput) as each prompt finishes. All are queued at once, so the
        engine keeps its batch full (continuous batching) instead of waiting for the slowest of a group."""
        token_lists = [self.tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]
        params = params or self.engine.default_params()
        for ids in token_lists:
            self.engine.check_prompt(ids)
        request_ids = [f"llm-{next(self._ids)}" for _ in token_lists]
        index = {rid: i for i, rid in enumerate(request_ids)}
        results = {rid: GenerationOutput("", [], None) for rid in request_ids}
        try:
            for rid, ids in zip(request_ids, token_lists, strict=True):
                self.engine.add_request(rid, ids, params)
            pending = len(request_ids)
            while pending:
                for out in self.engine.step():
                    result = results.get(out.request_id)
                    if result is not None:
                        result.text += out.text_delta
                        result.token_ids += out.new_token_ids
                        result.finish_reason = out.finish_reason
                        if out.finish_reason is not None:
                            pending -= 1
                            yield index[out.request_id], result
        finally:
            for rid in request_ids:
                self.engine.abort(rid)

    def stream(self, prompt, params: SamplingParams | None = None) -> Iterator[str]:
        """Yield text pieces as they are generated (abandoning the iterator aborts the request)."""
        for out in self._stream_outputs(prompt, params):
            if out.text_delta:
                yield out.text_delta

    def _stream_outputs(self, prompt, params) -> Iterator[RequestOutput]:
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        rid = f"llm-{next(self._ids)}"
        self.engine.add_request(rid, ids, params or self.engine.default_params())
        try:
            while True:
                for out in self.engine.step():
                    if out.request_id == rid:
                        yield out
                        if out.finished:
                            return
        finally:
            self.engine.abort(rid)

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        params: SamplingParams | None = None,
        *,
        on_delta: Callable[[str], None] | None = None,
        **template_kwargs,
    ) -> ChatOutput:
        """Render the chat template, generate, split off <think> reasoning and parse tool calls (when tools given).

        on_delta: called with each piece of raw text as it is generated (the parse happens at the end)."""
        from qcoder.engine.assistant import finish_reason, parse_assistant

        ids = self.chat_prompt_ids(messages, tools, **template_kwargs)
        text, reason, generated = "", None, 0
        for out in self._stream_outputs(ids, params):
            text, reason, generated = text + out.text_delta, out.finish_reason, generated + len(out.new_token_ids)
            if on_delta is not None and out.text_delta:
                on_delta(out.text_delta)
        reply = parse_assistant(text, self.engine.tool_parser, tools, self.engine.opens_thinking(ids))
        return ChatOutput(
            content=reply.content,
            reasoning_content=reply.reasoning,
            tool_calls=reply.tool_calls,
            finish_reason=finish_reason(reason, bool(reply.tool_calls)),
            prompt_tokens=len(ids),
            completion_tokens=generated,
        )

    def chat_prompt_ids(self, messages: list[dict], tools: list[dict] | None = None, **template_kwargs) -> list[int]:
        text = self.engine.chat_template.render(messages, tools=tools, add_generation_prompt=True, **template_kwargs)
        return self.tokenizer.encode(text)
