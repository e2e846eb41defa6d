"""Endpoints that need no generation, auth, and every bad input -> an OpenAI-format error, server still serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import LiveServer, make_state

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def post(server, path: str, body=None, *, content=None, headers=None) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, content=content, headers=headers, timeout=60)


def assert_error(response: httpx.Response, status: int, *, param: str | None = None, says: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert says.lower() in error["message"].lower()
    if param is not None:
        assert error["param"] == param
    return error


def test_models_and_health(tiny_server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].object == "model"
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("other")
    assert httpx.get(tiny_server.base_url + "/health").json() == {"status": "ok"}


def test_unknown_route_and_method(tiny_server):
    assert_error(httpx.get(tiny_server.base_url + "/v1/nothing"), 404)
    assert_error(httpx.get(tiny_server.base_url + CHAT), 405)


def test_malformed_json_is_400(tiny_server):
    error = assert_error(
        post(
            tiny_server, CHAT, content=b'{"model": "tiny", "messages": [', headers={"content-type": "application/json"}
        ),
        400,
        says="json",
    )
    assert error["type"] == "invalid_request_error"


def test_schema_errors_are_400_not_422(tiny_server):
    assert_error(post(tiny_server, CHAT, {"model": "tiny"}), 400, param="messages")
    assert_error(post(tiny_server, CHAT, {"model": "tiny", "messages": []}), 400, param="messages")
    assert_error(
        post(tiny_server, CHAT, {"model": "tiny", "messages": HELLO, "temperature": 9}), 400, param="temperature"
    )
    assert_error(post(tiny_server, CHAT, [1, 2]), 400, says="must be a JSON object")
    assert_error(
        post(tiny_server, CHAT, content=b"", headers={"content-type": "application/json"}),
        400,
        says="must be a JSON object",
    )


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"n": 0}, "n"),
        ({"n": 1000}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -5}, "max_completion_tokens"),
        ({"top_logprobs": 50, "logprobs": True}, "top_logprobs"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_out_of_range_fields(tiny_server, extra, param):
    assert_error(post(tiny_server, CHAT, {"model": "tiny", "messages": HELLO, **extra}), 400, param=param)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=HELLO)
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    "messages, says",
    [
        ([{"role": "wizard", "content": "hi"}], "role"),
        ([{"role": "tool", "content": "42", "tool_call_id": "x"}], "tool message must follow"),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "user", "content": "and?"},
            ],
            "must be followed by tool",
        ),
        ([{"role": "user"}], "needs content"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}], "text only"),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                    ],
                },
                {"role": "tool", "content": "1", "tool_call_id": "c1"},
            ],
            "json",
        ),
    ],
)
def test_bad_messages(tiny_server, messages, says):
    assert_error(post(tiny_server, CHAT, {"model": "tiny", "messages": messages}), 400, says=says)


def tool(name: str, parameters=None) -> dict:
    function = {"name": name, "description": f"the {name} tool"}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


@pytest.mark.parametrize(
    "tools, tool_choice, says",
    [
        ([{"type": "function", "function": {"name": "bad name!"}}], None, "tools.0.function.name"),
        ([tool("f", {"type": "string"})], None, "type 'object'"),
        ([{"type": "retrieval"}], None, "tools.0"),
        ([tool("f"), tool("f")], None, "duplicate"),
        ([tool("f")], {"type": "function", "function": {"name": "g"}}, "not in tools"),
        (None, "required", "non-empty tools"),
    ],
)
def test_bad_tools(tiny_server, tools, tool_choice, says):
    body = {"model": "tiny", "messages": HELLO, "tools": tools}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    assert_error(post(tiny_server, CHAT, body), 400, says=says)


def test_prompt_longer_than_the_context_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 600}])
    assert info.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt=[1] * 600)


def test_completion_prompt_checks(client):
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.completions.create(model="tiny", prompt=[1, 10**7])
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model="tiny", prompt="x", echo=True, logprobs=1)


def test_capacity_and_draining(tiny_server, client):
    state = tiny_server.state
    waiting, state.max_waiting = state.max_waiting, 0
    try:
        with pytest.raises(openai.RateLimitError) as info:  # more choices than running + waiting slots
            client.chat.completions.create(model="tiny", messages=HELLO, n=state.max_num_seqs + 1, max_tokens=1)
        assert info.value.body["code"] == "rate_limit_exceeded"
    finally:
        state.max_waiting = waiting
    state.draining = True
    try:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=1)
        assert info.value.status_code == 503
        assert httpx.get(tiny_server.base_url + "/health").json() == {"status": "draining"}
    finally:
        state.draining = False
    assert client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=1).choices


def test_errors_are_counted_in_metrics(tiny_server):
    assert_error(post(tiny_server, CHAT, {"model": "tiny"}), 400)
    text = httpx.get(tiny_server.base_url + "/metrics").text
    assert 'qcoder_requests_total{endpoint="/v1/chat/completions",status="400"}' in text


@pytest.fixture(scope="module")
def secured_server(tiny_model_dir):
    from qcoder.engine.engine import LLMEngine

    llm = LLMEngine(str(tiny_model_dir), max_model_len=256, max_num_seqs=2)
    server = LiveServer(make_state(llm, api_key="s3cret"))
    yield server
    server.stop()


def test_api_key(secured_server):
    with pytest.raises(openai.AuthenticationError):
        secured_server.client(api_key="wrong").models.list()
    response = httpx.get(secured_server.base_url + "/v1/models")
    assert_error(response, 401, says="api key")
    assert httpx.get(secured_server.base_url + "/health").status_code == 200
    good = secured_server.client(api_key="s3cret")
    assert [m.id for m in good.models.list().data] == ["tiny"]
    reply = good.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    assert reply.choices[0].finish_reason in ("stop", "length")
