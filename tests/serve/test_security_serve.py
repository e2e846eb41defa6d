"""Issue 14 items 7-9 against the real server on the tiny model: usage with n > 1, a real 429 for an
overloaded stream, and bad text (lone surrogates, bad UTF-8, deep nesting) as a 400, never a 500."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from qcoder.serve import chat

from .test_serve_errors import assert_error

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Write a function that adds two numbers."}]


def post_raw(server, body: bytes, path: str = CHAT) -> httpx.Response:
    return httpx.post(server.base_url + path, content=body, headers={"content-type": "application/json"}, timeout=60)


# ---------------------------------------------------------------- item 7


def test_chat_usage_counts_the_prompt_once_for_n_choices(client):
    one = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, seed=1)
    three = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, seed=1, n=3)
    assert three.usage.prompt_tokens == one.usage.prompt_tokens > 10
    assert three.usage.total_tokens == three.usage.prompt_tokens + three.usage.completion_tokens
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, n=3, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens == one.usage.prompt_tokens


# ---------------------------------------------------------------- item 8


@pytest.fixture
def fills_up_while_preparing(tiny_server, monkeypatch):
    """Other requests take every slot while this one's prompt is prepared (the race item 8 is about)."""
    state = tiny_server.state
    capacity = state.max_num_seqs + state.max_waiting
    prepare = chat.prepare_prompt
    taken = []

    def prepare_then_fill(state_, req):
        prompt = prepare(state_, req)
        if not taken:
            state.in_flight += capacity
            taken.append(capacity)
        return prompt

    monkeypatch.setattr(chat, "prepare_prompt", prepare_then_fill)
    yield
    state.in_flight -= sum(taken)


def test_an_overloaded_stream_is_refused_with_a_real_429(tiny_server, client, fills_up_while_preparing):
    with pytest.raises(openai.RateLimitError) as caught:  # raised by create(): the status line said 429
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, stream=True)
    response = caught.value.response
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_the_server_still_answers_after_refusing(tiny_server, client):
    assert tiny_server.state.in_flight == 0
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, stream=False)
    assert reply.choices[0].message.content is not None


# ---------------------------------------------------------------- item 9

SURROGATES = {
    "messages.0.content": {"model": "tiny", "messages": [{"role": "user", "content": "\udcff\u0000 {{ config }}"}]},
    "messages.1.content.0.text": {"model": "tiny", "messages": [
        {"role": "system", "content": "hi"}, {"role": "user", "content": [{"type": "text", "text": "a\ud800"}]}]},
    "tools.0.function.description": {"model": "tiny", "messages": MESSAGES, "tools": [
        {"type": "function", "function": {"name": "f", "description": "\udfff"}}]},
    "stop.0": {"model": "tiny", "messages": MESSAGES, "stop": ["\ud83d"]},
    "chat_template_kwargs.x": {"model": "tiny", "messages": MESSAGES, "chat_template_kwargs": {"x": "\udc00"}},
}


@pytest.mark.parametrize("field", list(SURROGATES))
@pytest.mark.parametrize("stream", [False, True])
def test_lone_surrogates_are_a_400_naming_the_field(tiny_server, field, stream):
    body = json.dumps({**SURROGATES[field], "stream": stream, "max_tokens": 4}).encode()  # ASCII: \udcff escapes
    assert_error(post_raw(tiny_server, body), 400, param=field, says="lone UTF-16 surrogate")


def test_other_unreadable_bodies_are_400s(tiny_server):
    prompt = json.dumps({"model": "tiny", "prompt": "x\udcffy", "max_tokens": 2}).encode()
    assert_error(post_raw(tiny_server, prompt, "/v1/completions"), 400, param="prompt")
    assert_error(post_raw(tiny_server, b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff"}]}'),
                 400, says="not valid UTF-8")
    assert_error(post_raw(tiny_server, b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 400,
                 says="too deeply")


def test_a_surrogate_pair_is_fine(client, tiny_server):
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "smile \U0001F600"}],
                       "max_tokens": 2}).encode()
    assert b"\\ud83d\\ude00" in body  # the same escapes, paired
    assert post_raw(tiny_server, body).status_code == 200


def test_an_unexpected_failure_reading_the_input_is_a_400(tiny_server, client, monkeypatch):
    def broken(state, req):
        raise TypeError("TextInputSequence must be str")

    monkeypatch.setattr(chat, "prepare_prompt", broken)
    with pytest.raises(openai.BadRequestError, match="TextInputSequence must be str"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
