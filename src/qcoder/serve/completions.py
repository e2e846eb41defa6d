"""POST /v1/completions: raw prompts (text or token ids) -> engine -> text choices or SSE chunks.

With several prompts, choice `p * n + j` is the j-th sample of prompt p, as in the OpenAI API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from qcoder.serve import constraints, convert
from qcoder.serve.errors import bad_request
from qcoder.serve.generation import KEEPALIVE, Generation
from qcoder.serve.protocol import CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, random_id
from qcoder.serve.state import ServerState


def prompts_of(state: ServerState, req: CompletionRequest) -> list[list[int]]:
    """Token ids of every prompt in the request."""
    prompt = req.prompt
    if isinstance(prompt, str):
        prompts = [prompt]
    elif prompt and all(isinstance(p, int) for p in prompt):
        prompts = [prompt]
    else:
        prompts = list(prompt)
    ids = [state.tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]
    vocab = state.tokenizer.vocab_size
    for i, p in enumerate(ids):
        if not p:
            raise bad_request(f"prompt {i} is empty", param="prompt")
        if any(not 0 <= t < vocab for t in p):
            raise bad_request(f"prompt {i} has a token id outside the vocabulary (0..{vocab - 1})", param="prompt")
    return ids


def sequences_of(state: ServerState, req: CompletionRequest) -> list[tuple[list[int], object]]:
    if req.echo and req.logprobs is not None:
        raise bad_request("echo with logprobs is not supported (prompt logprobs are not computed)", param="echo")
    constraint = constraints.for_request(state, req)
    sequences = []
    for ids in prompts_of(state, req):
        for params in convert.params_for(state, req, len(ids), req.max_tokens, req.logprobs, constraint=constraint):
            sequences.append((ids, params))
    return sequences


def _echo(state: ServerState, req: CompletionRequest, sequences, index: int) -> str:
    return state.tokenizer.decode(sequences[index][0]) if req.echo else ""


async def complete(state: ServerState, req: CompletionRequest, sequences, generation: Generation) -> CompletionResponse:
    count = len(sequences)
    texts = [[_echo(state, req, sequences, i)] for i in range(count)]
    logprobs = [CompletionLogprobs() for _ in range(count)]
    reasons: list[str | None] = [None] * count
    usage = convert.UsageCounter(req.n)
    async with aclosing(generation.outputs()) as outputs:
        async for index, out in outputs:
            if req.logprobs is not None:
                _extend(logprobs[index], convert.completion_logprobs(state.tokenizer, out, sum(map(len, texts[index]))))
            texts[index].append(out.text_delta)
            usage.add(index, out)
            if out.finished:
                reasons[index] = out.finish_reason
    choices = [
        CompletionChoice(
            index=i,
            text="".join(texts[i]),
            finish_reason=reasons[i] or "stop",
            logprobs=logprobs[i] if req.logprobs is not None else None,
        )
        for i in range(count)
    ]
    return CompletionResponse(model=state.model_name, choices=choices, usage=usage.usage())


def _extend(target: CompletionLogprobs, more: CompletionLogprobs) -> None:
    target.tokens += more.tokens
    target.token_logprobs += more.token_logprobs
    target.top_logprobs += more.top_logprobs
    target.text_offset += more.text_offset


async def stream(state: ServerState, req: CompletionRequest, sequences, generation: Generation) -> AsyncIterator[str]:
    chunk_id, created = random_id("cmpl-"), int(time.time())
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def sse(choices: list[CompletionChoice], usage=None) -> str:
        chunk = CompletionResponse(id=chunk_id, created=created, model=state.model_name, choices=choices, usage=usage)
        return f"data: {chunk.model_dump_json(exclude=None if include_usage else {'usage'})}\n\n"

    offsets = [0] * len(sequences)
    pending_echo = {i: _echo(state, req, sequences, i) for i in range(len(sequences))}
    usage = convert.UsageCounter(req.n)
    async with aclosing(generation.outputs(state.stream_keepalive_s)) as outputs:
        async for item in outputs:
            if item is KEEPALIVE:  # nothing yet: an empty text chunk keeps idle-timeout clients waiting
                yield sse([CompletionChoice(index=0, text="")])
                continue
            index, out = item
            usage.add(index, out)
            text = pending_echo.pop(index, "") + out.text_delta
            logprobs = None
            if req.logprobs is not None:
                logprobs = convert.completion_logprobs(state.tokenizer, out, offsets[index])
            offsets[index] += len(out.text_delta)
            reason = (out.finish_reason or "stop") if out.finished else None
            if text or logprobs or reason:
                yield sse([CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=reason)])
    if include_usage:
        yield sse([], usage.usage())
    yield "data: [DONE]\n\n"
