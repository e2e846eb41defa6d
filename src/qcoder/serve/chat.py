"""POST /v1/chat/completions: messages + tools -> prompt ids -> engine -> OpenAI message or SSE chunks.

Each choice's text goes through two parsers in order: the reasoning split (`<think>...</think>` becomes
`reasoning_content`), then the tool-call parser on what remains. A whole response is parsed once at the end;
a stream is parsed as it grows, so a call is sent as soon as its name is known, then its argument fragments.

tool_choice semantics (documented choices, OpenAI-compatible where a text model can be):
- "none": the template is not shown the tools and the output is never parsed for calls.
- "auto" (default with tools): calls are parsed out when the model makes them.
- "required" / a named function: enforced by structured decoding (serve/constraints.py): the reply is exactly one
  call of an offered (or the named) tool, in the model's format, with arguments valid against its schema.
response_format json_object / json_schema and vLLM's guided_* extras constrain the text the same way.
- parallel_tool_calls false: only the first call is returned.
A call that is malformed or cut off comes back as content with finish_reason "stop" (a stream may already have
announced it by name; its arguments then stay incomplete).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from qcoder.engine.assistant import finish_reason, parse_assistant
from qcoder.engine.chat_template import TEXT_PART_TYPES
from qcoder.engine.reasoning import ReasoningStream
from qcoder.engine.tool_parsers import ArgumentsDelta, ContentDelta, ToolCallStart
from qcoder.serve import constraints, convert
from qcoder.serve.errors import bad_request
from qcoder.serve.generation import KEEPALIVE, Generation
from qcoder.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    DeltaMessage,
    FunctionCallOut,
    FunctionDelta,
    NamedToolChoice,
    ToolCallDelta,
    ToolCallOut,
    random_id,
)
from qcoder.serve.state import ServerState

RESERVED_TEMPLATE_KWARGS = ("messages", "tools", "add_generation_prompt")


@dataclass
class ChatPrompt:
    token_ids: list[int]
    tools: list[dict] | None  # the tools calls are parsed against; None: do not parse calls
    starts_in_thinking: bool  # the template opened <think> itself (the output starts inside reasoning)


def prepare_prompt(state: ServerState, req: ChatCompletionRequest) -> ChatPrompt:
    """Validate the conversation and tools, render the chat template and tokenize. Raises APIError(400)."""
    _check_content_parts(req)
    _check_order(req)
    tools = _check_tools(req)
    kwargs = {k: v for k, v in (req.chat_template_kwargs or {}).items() if k not in RESERVED_TEMPLATE_KWARGS}
    if req.continue_final_message and req.add_generation_prompt and "add_generation_prompt" in req.model_fields_set:
        raise bad_request("continue_final_message and add_generation_prompt cannot both be true",
                          param="continue_final_message")
    text = state.template.render(req.messages, tools=tools, add_generation_prompt=req.add_generation_prompt,
                                 continue_final_message=req.continue_final_message, **kwargs)
    ids = state.tokenizer.encode(text)
    return ChatPrompt(ids, tools, state.engine.opens_thinking(ids))


def _check_content_parts(req: ChatCompletionRequest) -> None:
    for index, message in enumerate(req.messages):
        for part in message.content if isinstance(message.content, list) else []:
            if part.type not in TEXT_PART_TYPES:
                raise bad_request(
                    f"messages[{index}]: content parts of type {part.type!r} are not supported (text only)",
                    param=f"messages.{index}.content",
                )


def _check_order(req: ChatCompletionRequest) -> None:
    previous = None
    for i, message in enumerate(req.messages):
        param = f"messages.{i}"
        if message.role in ("system", "developer", "user") and message.content is None:
            raise bad_request(f"messages[{i}]: a {message.role} message needs content", param=param)
        if message.role == "assistant" and message.content is None and not message.tool_calls:
            raise bad_request(f"messages[{i}]: an assistant message needs content or tool_calls", param=param)
        if message.tool_calls and message.role != "assistant":
            raise bad_request(f"messages[{i}]: only assistant messages carry tool_calls", param=param)
        if message.role == "tool":
            if previous is None or not (previous.role == "tool" or previous.tool_calls):
                raise bad_request(
                    f"messages[{i}]: a tool message must follow an assistant message with "
                    "tool_calls (or another tool message)",
                    param=param,
                )
            if message.content is None:
                raise bad_request(f"messages[{i}]: a tool message needs content", param=param)
        elif previous is not None and previous.tool_calls:
            raise bad_request(
                f"messages[{i}]: an assistant message with tool_calls must be followed by tool messages answering them",
                param=param,
            )
        previous = message


def _check_tools(req: ChatCompletionRequest) -> list[dict] | None:
    """The tools to offer the template (None: none offered), after checking them and tool_choice."""
    tools = req.tools or []
    names = [t.function.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise bad_request(f"tools: duplicate function name(s) {duplicates}", param="tools")
    choice = req.tool_choice
    if choice == "required" and not tools:
        raise bad_request("tool_choice 'required' needs a non-empty tools list", param="tool_choice")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise bad_request(
            f"tool_choice names function {choice.function.name!r}, which is not in tools", param="tool_choice"
        )
    if not tools or choice == "none":
        return None
    return [t.model_dump(exclude_none=True) for t in tools]


def sampling_params(state: ServerState, req: ChatCompletionRequest, prompt: ChatPrompt) -> list:
    """One SamplingParams per choice, with the request's structured-output constraint (compiled: may take a while)."""
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    constraint = constraints.for_request(state, req, prompt.tools)
    return convert.params_for(state, req, len(prompt.token_ids), req.output_limit, logprobs, req.budget, constraint)


# ---------------------------------------------------------------- one choice's output


class ChoiceParser:
    """Turns one sequence's text deltas into message deltas: reasoning first, then tool calls."""

    def __init__(self, state: ServerState, prompt: ChatPrompt, parallel_tool_calls: bool):
        self.reasoning = ReasoningStream(starts_in_thinking=prompt.starts_in_thinking)
        self.calls = state.tool_parser.stream(prompt.tools) if prompt.tools else None
        self.parallel = parallel_tool_calls

    def feed(self, text: str) -> DeltaMessage | None:
        reasoning, content = self.reasoning.feed(text)
        return self._delta(reasoning, content, final=False)

    def finish(self) -> DeltaMessage | None:
        reasoning, content = self.reasoning.finish()
        return self._delta(reasoning, content, final=True)

    @property
    def made_calls(self) -> bool:
        """Whether a call was completed: one announced and then cut off does not make "tool_calls"."""
        return bool(self.calls and self.calls.completed_calls)

    def _delta(self, reasoning: str, content: str, final: bool) -> DeltaMessage | None:
        calls: list[ToolCallDelta] = []
        if self.calls is not None:
            events = self.calls.feed(content) if content else []
            if final:
                events += self.calls.finish()
            content, calls = self._convert(events)
        if not (reasoning or content or calls):
            return None
        return DeltaMessage(reasoning_content=reasoning or None, content=content or None, tool_calls=calls or None)

    def _convert(self, events: list) -> tuple[str, list[ToolCallDelta]]:
        """Tool-stream events -> (content text, tool-call deltas); without parallel calls only the first is kept."""
        content, calls = [], []
        for event in events:
            if isinstance(event, ContentDelta):
                content.append(event.text)
            elif not self.parallel and event.index > 0:
                continue
            elif isinstance(event, ToolCallStart):
                calls.append(
                    ToolCallDelta(
                        index=event.index,
                        id=event.id,
                        type="function",
                        function=FunctionDelta(name=event.name, arguments=""),
                    )
                )
            elif isinstance(event, ArgumentsDelta):
                if calls and calls[-1].index == event.index:  # one entry per call and chunk
                    calls[-1].function.arguments += event.text
                else:
                    calls.append(ToolCallDelta(index=event.index, function=FunctionDelta(arguments=event.text)))
        return "".join(content), calls


def parse_whole(state: ServerState, prompt: ChatPrompt, text: str, parallel: bool) -> AssistantMessage:
    reply = parse_assistant(text, state.tool_parser, prompt.tools, prompt.starts_in_thinking)
    calls = [
        ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments)) for c in reply.tool_calls
    ]
    if not parallel:
        calls = calls[:1]
    return AssistantMessage(
        content=reply.content if reply.content or not calls else None,
        reasoning_content=reply.reasoning or None,
        tool_calls=calls,
    )


# ---------------------------------------------------------------- responses


async def complete(
    state: ServerState, req: ChatCompletionRequest, prompt: ChatPrompt, generation: Generation
) -> ChatCompletionResponse:
    n = len(generation.params)
    texts = [[] for _ in range(n)]
    logprobs = [[] for _ in range(n)]
    reasons: list[str | None] = [None] * n
    usage = convert.UsageCounter(req.n)  # one prompt, n samples
    async with aclosing(generation.outputs()) as outputs:
        async for index, out in outputs:
            texts[index].append(out.text_delta)
            if req.logprobs:
                logprobs[index].extend(convert.chat_logprobs(state.tokenizer, out))
            usage.add(index, out)
            if out.finished:
                reasons[index] = out.finish_reason
    choices = []
    for i in range(n):
        message = parse_whole(state, prompt, "".join(texts[i]), req.parallel_tool_calls)
        choices.append(
            ChatChoice(
                index=i,
                message=message,
                logprobs=ChoiceLogprobs(content=logprobs[i]) if req.logprobs else None,
                finish_reason=finish_reason(reasons[i], bool(message.tool_calls)),
            )
        )
    return ChatCompletionResponse(model=state.model_name, choices=choices, usage=usage.usage())


async def stream(
    state: ServerState, req: ChatCompletionRequest, prompt: ChatPrompt, generation: Generation
) -> AsyncIterator[str]:
    """SSE lines: a role delta per choice, content/reasoning/tool-call deltas, finish, optional usage, [DONE].

    While no output arrives for state.stream_keepalive_s seconds, an empty delta (`"delta": {}`) for choice 0
    is sent: valid OpenAI output that clients add nothing from, but that resets their idle timers."""
    chunk_id, created = random_id("chatcmpl-"), int(time.time())
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def sse(choices: list[ChatChunkChoice], usage=None) -> str:
        chunk = ChatCompletionChunk(id=chunk_id, created=created, model=state.model_name, choices=choices, usage=usage)
        return f"data: {chunk.model_dump_json(exclude=None if include_usage else {'usage'})}\n\n"

    n = len(generation.params)
    parsers = [ChoiceParser(state, prompt, req.parallel_tool_calls) for _ in range(n)]
    usage = convert.UsageCounter(req.n)  # one prompt, n samples
    for i in range(n):
        yield sse([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
    async with aclosing(generation.outputs(state.stream_keepalive_s)) as outputs:
        async for item in outputs:
            if item is KEEPALIVE:  # nothing yet (e.g. a long prompt in prefill): show the client we are alive
                yield sse([ChatChunkChoice(index=0, delta=DeltaMessage())])
                continue
            index, out = item
            usage.add(index, out)
            parser = parsers[index]
            delta = parser.feed(out.text_delta)
            logprobs = None
            if req.logprobs:
                logprobs = ChoiceLogprobs(content=convert.chat_logprobs(state.tokenizer, out))
            if delta is not None or logprobs is not None:
                yield sse([ChatChunkChoice(index=index, delta=delta or DeltaMessage(), logprobs=logprobs)])
            if out.finished:
                tail = parser.finish()
                if tail is not None:
                    yield sse([ChatChunkChoice(index=index, delta=tail)])
                reason = finish_reason(out.finish_reason, parser.made_calls)
                yield sse([ChatChunkChoice(index=index, delta=DeltaMessage(), finish_reason=reason)])
    if include_usage:
        yield sse([], usage.usage())
    yield "data: [DONE]\n\n"
