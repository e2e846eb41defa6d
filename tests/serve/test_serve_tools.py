"""Tool calls and reasoning end to end: a scripted model says a fixed text; the server must turn it into OpenAI
tool_calls / reasoning_content, whole and streamed, for the Qwen3-Coder XML and the Hermes JSON formats."""

from __future__ import annotations

import json

import pytest

from tests.conftest import QWEN3_CODER, QWEN25_TOKENIZER

from .conftest import LiveServer, make_state, scripted_engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The current time (no parameters)."}}
ASK = [{"role": "user", "content": "Weather in Paris for 3 days, and the time?"}]

XML_CALL = (
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
)
XML_TIME = "<tool_call>\n<function=get_time>\n</function>\n</tool_call>"
HERMES_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'
HERMES_TIME = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
FORMATS = {"qwen3_coder": (XML_CALL, XML_TIME), "hermes": (HERMES_CALL, HERMES_TIME)}


class ScriptedServer:
    def __init__(self, tokenizer_dir):
        self.llm, self.model = scripted_engine(tokenizer_dir)
        self.server = LiveServer(make_state(self.llm, model_name="scripted"))
        self.client = self.server.client()

    def say(self, text: str) -> None:
        self.model.script = self.llm.tokenizer.encode(text)

    def chat(self, text: str, **kwargs):
        self.say(text)
        return self.client.chat.completions.create(
            model="scripted", messages=kwargs.pop("messages", ASK), temperature=0, **kwargs
        )

    def stream(self, text: str, **kwargs) -> dict:
        """Stream a chat and assemble it the way an SDK user would; also returns the raw chunks."""
        self.say(text)
        chunks = list(
            self.client.chat.completions.create(model="scripted", messages=ASK, temperature=0, stream=True, **kwargs)
        )
        result = {"content": "", "reasoning": "", "calls": {}, "finish": None, "chunks": chunks}
        for chunk in chunks:
            for choice in chunk.choices:
                delta = choice.delta
                result["content"] += delta.content or ""
                result["reasoning"] += getattr(delta, "reasoning_content", None) or ""
                for call in delta.tool_calls or []:
                    slot = result["calls"].setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                    if call.id:
                        assert slot["id"] is None, "a call's id is sent once"
                        slot.update(id=call.id, name=call.function.name)
                        assert call.type == "function"
                    result["calls"][call.index]["arguments"] += call.function.arguments or ""
                result["finish"] = choice.finish_reason or result["finish"]
        return result


@pytest.fixture(scope="module", params=["qwen3_coder", "hermes"])
def scripted(request):
    server = ScriptedServer(QWEN3_CODER if request.param == "qwen3_coder" else QWEN25_TOKENIZER)
    server.format = request.param
    yield server
    server.server.stop()


def test_parser_is_picked_from_the_template(scripted):
    assert scripted.server.state.tool_parser.name == scripted.format


def test_one_call(scripted):
    call_text, _ = FORMATS[scripted.format]
    reply = scripted.chat(call_text, tools=[WEATHER, TIME])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}


def test_one_call_streamed(scripted):
    call_text, _ = FORMATS[scripted.format]
    result = scripted.stream(call_text, tools=[WEATHER, TIME])
    assert result["finish"] == "tool_calls"
    assert result["content"].strip() == ""
    assert list(result["calls"]) == [0]
    call = result["calls"][0]
    assert call["id"].startswith("call_") and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris", "days": 3}
    # the name arrives before the end of the stream: in a chunk of its own, ahead of the argument fragments
    first = next(i for i, c in enumerate(result["chunks"]) if c.choices and c.choices[0].delta.tool_calls)
    assert first < len(result["chunks"]) - 2


def test_text_then_parallel_calls(scripted):
    call_text, time_text = FORMATS[scripted.format]
    script = f"Let me look that up.\n{call_text}\n{time_text}"
    reply = scripted.chat(script, tools=[WEATHER, TIME])
    message = reply.choices[0].message
    assert message.content.strip() == "Let me look that up."
    assert [c.function.name for c in message.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(message.tool_calls[1].function.arguments) == {}
    assert len({c.id for c in message.tool_calls}) == 2

    streamed = scripted.stream(script, tools=[WEATHER, TIME])
    assert streamed["content"].strip() == "Let me look that up."
    assert [streamed["calls"][i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert json.loads(streamed["calls"][0]["arguments"]) == {"city": "Paris", "days": 3}
    assert streamed["finish"] == "tool_calls"

    single = scripted.chat(script, tools=[WEATHER, TIME], parallel_tool_calls=False)
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]


def test_tool_choice_none_leaves_text_alone(scripted):
    call_text, _ = FORMATS[scripted.format]
    reply = scripted.chat(call_text, tools=[WEATHER], tool_choice="none")
    assert not reply.choices[0].message.tool_calls
    assert reply.choices[0].message.content == call_text
    assert reply.choices[0].finish_reason == "stop"


def test_required_and_named_calls_in_the_model_format_pass_the_constraint(scripted):
    """tool_choice required/named constrain decoding to one call (tests/serve/test_serve_structured.py); a model
    that writes the call in its own format, as the template teaches, gets it through token for token."""
    reply = scripted.chat(FORMATS[scripted.format][0], tools=[WEATHER], tool_choice="required")
    (call,) = reply.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    assert reply.choices[0].finish_reason == "tool_calls"
    named = scripted.chat(
        FORMATS[scripted.format][0],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_truncated_call_comes_back_as_content(scripted):
    call_text, _ = FORMATS[scripted.format]
    broken = call_text[: len(call_text) // 2]
    reply = scripted.chat(broken, tools=[WEATHER])
    assert not reply.choices[0].message.tool_calls
    assert reply.choices[0].message.content.strip() == broken.strip()
    assert reply.choices[0].finish_reason == "stop"
    streamed = scripted.stream(broken, tools=[WEATHER])
    # A stream may already have announced the call (its name came before the cut); the raw text follows as
    # content and the finish reason says no call was made.
    assert streamed["content"].strip() == broken.strip()
    assert streamed["finish"] == "stop"


def test_history_with_tool_results_is_accepted(scripted):
    messages = ASK + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    reply = scripted.chat("It will be sunny.", tools=[WEATHER], messages=messages)
    assert reply.choices[0].message.content == "It will be sunny."


def test_reasoning_is_split(scripted):
    script = "<think>\nParis is in France.\n</think>\n\nIt will be sunny."
    reply = scripted.chat(script)
    message = reply.choices[0].message
    assert message.reasoning_content.strip() == "Paris is in France."
    assert message.content.strip() == "It will be sunny."

    streamed = scripted.stream(script)
    assert streamed["reasoning"].strip() == "Paris is in France."
    assert streamed["content"].strip() == "It will be sunny."


def test_reasoning_then_call(scripted):
    call_text, _ = FORMATS[scripted.format]
    script = f"<think>\nI need the weather tool.\n</think>\n\n{call_text}"
    streamed = scripted.stream(script, tools=[WEATHER])
    assert streamed["reasoning"].strip() == "I need the weather tool."
    assert streamed["calls"][0]["name"] == "get_weather"
    assert streamed["finish"] == "tool_calls"


def test_thinking_budget_is_enforced(scripted):
    if scripted.format != "qwen3_coder":
        pytest.skip("the budget counts <think> tokens, which only the Qwen3 vocabulary has")
    thought = " ".join(f"step{i}" for i in range(40))
    script = f"<think>\n{thought}\n</think>\n\nDone."
    full = scripted.chat(script).choices[0].message.reasoning_content
    capped = scripted.chat(script, extra_body={"thinking_budget": 5}).choices[0].message.reasoning_content
    assert "step30" in full
    assert "step30" not in capped and len(capped) < len(full)


def test_parser_can_be_overridden():
    llm, _ = scripted_engine(QWEN3_CODER)
    state = make_state(llm, tool_call_parser="hermes")
    try:
        assert state.tool_parser.name == "hermes" and not state.tool_parser.bare_function_tags
    finally:
        state.async_engine.shutdown()


# A Qwen3-style thinking template: the generation prompt opens <think> unless enable_thinking is false.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
THINKING_PROMPTS = ("<|im_start|>assistant\n<think>\n", "<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.fixture(scope="module")
def thinking():
    llm, model = scripted_engine(QWEN3_CODER, THINKING_TEMPLATE, THINKING_PROMPTS)
    server = LiveServer(make_state(llm, model_name="scripted"))
    yield server, llm, model
    server.stop()


def test_template_opened_thinking(thinking):
    server, llm, model = thinking
    model.script = llm.tokenizer.encode("Short plan.\n</think>\n\nThe answer.")
    client = server.client()
    reply = client.chat.completions.create(model="scripted", messages=ASK, temperature=0)
    assert reply.choices[0].message.reasoning_content == "Short plan."
    assert reply.choices[0].message.content == "The answer."
    chunks = list(client.chat.completions.create(model="scripted", messages=ASK, temperature=0, stream=True))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (reasoning, content) == ("Short plan.", "The answer.")


def test_enable_thinking_false_reaches_the_template(thinking):
    server, llm, model = thinking
    model.script = llm.tokenizer.encode("The answer.")
    reply = server.client().chat.completions.create(
        model="scripted", messages=ASK, temperature=0, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )
    message = reply.choices[0].message
    assert message.content == "The answer."
    assert getattr(message, "reasoning_content", None) is None


def test_thinking_token_budget_alias(thinking):
    server, llm, model = thinking
    model.script = llm.tokenizer.encode(" ".join(f"step{i}" for i in range(30)) + "\n</think>\n\nDone.")
    reply = server.client().chat.completions.create(
        model="scripted", messages=ASK, temperature=0, extra_body={"thinking_token_budget": 4}
    )
    assert "step10" not in reply.choices[0].message.reasoning_content
