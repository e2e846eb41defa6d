"""Conversions shared by the chat and text routes: request fields -> SamplingParams, engine outputs -> usage
and logprobs in the OpenAI shapes."""

from __future__ import annotations

import dataclasses

from qcoder.engine.sampling import SamplingParams, sampling_fields
from qcoder.engine.structured import Constraint
from qcoder.serve.errors import bad_request
from qcoder.serve.protocol import CompletionLogprobs, SamplingFields, TokenLogprob, TopLogprob, Usage, UsageDetails
from qcoder.serve.state import ServerState


def params_for(
    state: ServerState,
    req: SamplingFields,
    prompt_len: int,
    max_tokens: int | None,
    logprobs: int | None,
    thinking_budget: int | None = None,
    constraint: Constraint | None = None,
) -> list[SamplingParams]:
    """One SamplingParams per choice. Unset fields take the checkpoint's generation_config defaults.

    Output is capped at what the context window leaves, so a client asking for more than fits (Qwen Code asks
    for 32768) gets what fits and finish_reason "length"; only a prompt that alone fills the window is refused.
    """
    room = state.max_model_len - prompt_len
    if room <= 0:
        raise bad_request(
            f"the prompt is {prompt_len} tokens, which leaves no room in this model's context "
            f"length of {state.max_model_len} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    fields = {**sampling_fields(req), "max_tokens": min(max_tokens or room, room)}
    base = state.engine.default_params(
        **fields, logprobs=logprobs, thinking_budget=thinking_budget, constraint=constraint
    )
    # n choices from one seed would be n copies: choice i samples with seed + i.
    return [dataclasses.replace(base, seed=None if req.seed is None else req.seed + i) for i in range(req.n)]


class UsageCounter:
    """Usage of one request: each prompt counts once, completions add up over choices.

    Sequence i samples prompt i // n; the cached-token count is the first sample's (the others reuse its blocks).
    """

    def __init__(self, n: int = 1):
        self.n = n
        self.prompt_tokens: dict[int, int] = {}
        self.cached_tokens: dict[int, int] = {}
        self.completion_tokens: dict[int, int] = {}

    def add(self, index: int, out) -> None:
        prompt = index // self.n
        self.prompt_tokens[prompt] = out.prompt_tokens
        if index % self.n == 0:
            self.cached_tokens[prompt] = out.cached_tokens or 0
        self.completion_tokens[index] = out.completion_tokens

    def usage(self) -> Usage:
        prompt = sum(self.prompt_tokens.values())
        completion = sum(self.completion_tokens.values())
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=UsageDetails(cached_tokens=sum(self.cached_tokens.values())),
        )


def _token(tokenizer, token_id: int) -> tuple[str, list[int]]:
    raw = tokenizer.token_bytes(token_id)
    return raw.decode("utf-8", errors="replace"), list(raw)


def chat_logprobs(tokenizer, out) -> list[TokenLogprob]:
    """The chat shape: per token its text, bytes, logprob and the top alternatives."""
    entries = []
    for token_id, item in zip(out.new_token_ids, out.logprobs or [], strict=False):
        if item is None:
            continue
        logprob, top = item
        text, raw = _token(tokenizer, token_id)
        alternatives = [
            TopLogprob(token=t, logprob=lp, bytes=b) for t, b, lp in ((*_token(tokenizer, tid), lp) for tid, lp in top)
        ]
        entries.append(TokenLogprob(token=text, logprob=logprob, bytes=raw, top_logprobs=alternatives))
    return entries


def completion_logprobs(tokenizer, out, text_offset: int) -> CompletionLogprobs:
    """The legacy completions shape: parallel lists; offsets count characters from the start of the text."""
    result = CompletionLogprobs()
    for token_id, item in zip(out.new_token_ids, out.logprobs or [], strict=False):
        if item is None:
            continue
        logprob, top = item
        text, _ = _token(tokenizer, token_id)
        result.tokens.append(text)
        result.token_logprobs.append(logprob)
        result.top_logprobs.append({_token(tokenizer, tid)[0]: lp for tid, lp in top})
        result.text_offset.append(text_offset)
        text_offset += len(text)
    return result
