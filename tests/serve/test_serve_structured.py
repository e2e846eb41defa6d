"""Structured output through a real server and the openai SDK, on a tiny random model (the Qwen2.5 tokenizer, so
Hermes-format tool calls): response_format, tool_choice "required" / named, vLLM's guided_* extras, and a 400 for a
schema the compiler rejects. A random model follows no instructions: only the constraint makes these outputs valid."""

from __future__ import annotations

import json
import re

import jsonschema
import openai
import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 8},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "units": {"enum": ["metric", "imperial"]},
    },
    "required": ["city", "days", "units"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast for a city.",
            "parameters": SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a time zone.",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}},
                "required": ["zone"],
            },
        },
    },
]
ASK = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
SAMPLING = {"temperature": 1.0, "max_tokens": 120, "extra_body": {"top_k": 40}}


def chat(client, **kwargs):
    extra = {**SAMPLING["extra_body"], **kwargs.pop("extra_body", {})}
    options = {**SAMPLING, **kwargs, "extra_body": extra}
    return client.chat.completions.create(model="tiny", messages=kwargs.pop("messages", ASK), **options)


def assemble(stream) -> list[dict]:
    """Streamed chunks -> per choice {"content", "calls": {index: [name, arguments]}, "finish"}."""
    choices: dict[int, dict] = {}
    for chunk in stream:
        for choice in chunk.choices:
            slot = choices.setdefault(choice.index, {"content": "", "calls": {}, "finish": None})
            slot["content"] += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                entry = slot["calls"].setdefault(call.index, ["", ""])
                entry[0] += (call.function.name or "") if call.function else ""
                entry[1] += (call.function.arguments or "") if call.function else ""
            slot["finish"] = choice.finish_reason or slot["finish"]
    return [choices[i] for i in sorted(choices)]


def test_json_schema_response_format_is_always_valid(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": SCHEMA, "strict": True}}
    response = chat(client, n=8, seed=11, response_format=response_format)
    texts = set()
    for choice in response.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
        texts.add(choice.message.content)
    assert len(texts) > 2


def test_json_object_response_format(client):
    response = chat(client, n=2, seed=5, max_tokens=60, response_format={"type": "json_object"})
    for choice in response.choices:
        assert choice.message.content.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)


def test_tool_choice_required_always_gives_one_valid_call(client):
    response = chat(client, n=8, seed=3, tools=TOOLS, tool_choice="required")
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for choice in response.choices:
        assert choice.finish_reason == "tool_calls"
        assert not choice.message.content
        (call,) = choice.message.tool_calls
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_a_named_function_is_the_one_called(client):
    named = {"type": "function", "function": {"name": "get_time"}}
    response = chat(client, n=4, seed=8, tools=TOOLS, tool_choice=named)
    for choice in response.choices:
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_time"
        assert json.loads(call.function.arguments)["zone"] in ("UTC", "CET", "PST")


@pytest.mark.parametrize(
    "options",
    [
        {"tools": TOOLS, "tool_choice": "required"},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": SCHEMA}}},
    ],
)
def test_streaming_and_whole_responses_agree(client, options):
    whole = chat(client, n=3, seed=21, **options)
    streamed = assemble(chat(client, n=3, seed=21, stream=True, **options))
    for choice, parts in zip(whole.choices, streamed, strict=True):
        assert parts["finish"] == choice.finish_reason
        assert parts["content"] == (choice.message.content or "")
        calls = [[c.function.name, c.function.arguments] for c in choice.message.tool_calls or []]
        assert [parts["calls"][i] for i in sorted(parts["calls"])] == calls


def test_vllm_guided_extras(client):
    regex = chat(client, n=3, seed=1, extra_body={"guided_regex": r"[A-Z][a-z]{1,5} [0-9]{1,2}"})
    for choice in regex.choices:
        assert re.fullmatch(r"[A-Z][a-z]{1,5} [0-9]{1,2}", choice.message.content)
    picked = chat(client, n=3, seed=2, extra_body={"guided_choice": ["sunny", "rainy", "snow"]})
    assert {c.message.content for c in picked.choices} <= {"sunny", "rainy", "snow"}
    nested = chat(client, seed=4, extra_body={"structured_outputs": {"json": SCHEMA}})
    jsonschema.validate(json.loads(nested.choices[0].message.content), SCHEMA)
    completion = client.completions.create(
        model="tiny", prompt="The answer is", max_tokens=10, seed=3, extra_body={"guided_choice": ["yes", "no"]}
    )
    assert completion.choices[0].text in ("yes", "no")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": {"type": "strng"}}}},
            ["response_format", "strng"],
        ),
        ({"extra_body": {"guided_regex": "a(b"}}, ["guided_regex", "regex"]),
        ({"extra_body": {"guided_json": "{not json"}}, ["guided_json", "not valid JSON"]),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "f"}}}, ["json_schema.schema"]),
        ({"response_format": {"type": "json_object"}, "extra_body": {"guided_choice": ["a"]}}, ["at most one"]),
    ],
)
def test_a_rejected_constraint_is_a_400_naming_the_problem(client, kwargs, words):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, **kwargs)
    message = caught.value.body["message"]
    for word in words:
        assert word in message
    assert chat(client, max_tokens=3).choices[0].finish_reason  # and the server keeps serving
