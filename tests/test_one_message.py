"""The same model text under the same chat template gives the same assistant message everywhere: `LLM.chat`, the
agent's in-process client (whole and streamed), and the server (whole and streamed, read by the agent's HTTP
client). Checked for a checkpoint with its own template (Qwen2.5: Hermes calls), one without (the bundled
Qwen3-Coder template is used, so its parser too) and a Qwen3-Coder checkpoint."""

from __future__ import annotations

import json

import pytest

from qcoder.client import EngineClient, OpenAIClient
from qcoder.engine.llm import LLM
from qcoder.engine.sampling import SamplingParams
from tests.conftest import QWEN3_CODER, QWEN25_TOKENIZER
from tests.serve.conftest import LiveServer, make_state, scripted_engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
    },
}
ASK = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
TEXTS = [
    # A bare <function=...> call: only the Qwen3-Coder parser reads it (the drift this test guards against).
    "<think>\nLook it up.\n</think>\n\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>",
    'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>',
    "<think>\nNo tool needed.\n</think>\n\nIt is sunny.",
]


def _engine(checkpoint: str):
    engine, model = scripted_engine(QWEN3_CODER if checkpoint == "qwen3-coder" else QWEN25_TOKENIZER)
    if checkpoint == "no-template":
        engine.tokenizer.chat_template = None
    return engine, model


@pytest.fixture(scope="module", params=["with-template", "no-template", "qwen3-coder"])
def paths(request):
    """(checkpoint, say(text), {path name: chat(tools) -> message}) over one in-process engine and one served engine."""
    local, local_model = _engine(request.param)
    served, served_model = _engine(request.param)
    client_engine, client_model = _engine(request.param)  # the client drives its engine from its own thread
    server = LiveServer(make_state(served, model_name="scripted"))
    llm = LLM.from_engine(local)
    # its own engine (the client drives it from its own thread); the same text, unconstrained
    agent_local = EngineClient.from_llm(LLM.from_engine(client_engine), "scripted", constrain_tools=False)
    agent_http = OpenAIClient("scripted", base_url=f"{server.base_url}/v1", api_key="none")

    def say(text: str) -> None:
        local_model.script = served_model.script = client_model.script = local.tokenizer.encode(text)

    def from_llm(tools):
        out = llm.chat(ASK, tools, SamplingParams(temperature=0))
        return _message(out.content, out.reasoning_content, out.tool_calls, out.finish_reason)

    def from_client(client, stream):
        def chat(tools):
            r = client.chat(ASK, tools, on_delta=(lambda _: None) if stream else None, temperature=0)
            return _message(r.content, r.reasoning, r.tool_calls, r.finish_reason)

        return chat

    yield request.param, say, {
        "LLM.chat": from_llm,
        "agent in-process": from_client(agent_local, False),
        "agent in-process, streamed": from_client(agent_local, True),
        "server": from_client(agent_http, False),
        "server, streamed": from_client(agent_http, True),
    }
    server.stop()
    agent_local.close()


def _message(content, reasoning, calls, finish) -> dict:
    return {
        "content": content or "",
        "reasoning": reasoning or None,
        "calls": [(c.name, json.loads(c.arguments)) for c in calls],
        "finish": finish,
    }


@pytest.mark.parametrize("text", TEXTS, ids=["bare-function", "hermes", "no-call"])
@pytest.mark.parametrize("tools", [[WEATHER], None], ids=["tools", "no-tools"])
def test_every_path_gives_the_same_message(paths, text, tools):
    checkpoint, say, chats = paths
    say(text)
    messages = {name: chat(tools) for name, chat in chats.items()}
    first = messages["LLM.chat"]
    assert all(message == first for message in messages.values()), messages
    # Only the Qwen3-Coder parser (what the bundled template asks for) reads a bare <function=...> as a call.
    reads_bare_function = checkpoint != "with-template"
    made_call = bool(tools) and ("<tool_call>" in text or (reads_bare_function and "<function=" in text))
    assert first["calls"] == ([("get_weather", {"city": "Paris", "days": 3})] if made_call else [])
    assert first["finish"] == ("tool_calls" if made_call else "stop")
