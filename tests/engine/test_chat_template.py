"""Chat template rendering must be byte-identical to transformers' apply_chat_template."""

import json

import pytest
from transformers import AutoTokenizer

from qcoder.engine.chat_template import ChatTemplate, default_template, normalize_messages, normalize_tools
from qcoder.engine.tokenizer import Tokenizer
from qcoder.errors import QcoderError
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
QWEN25 = DATA / "qwen2.5-coder-tokenizer"
QWEN3 = DATA / "qwen3-coder-30b-a3b-instruct"

pytestmark = pytest.mark.skipif(not QWEN25.exists() or not QWEN3.exists(), reason="shared tokenizer data missing")

READ_FILE = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file from the workspace.\n",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path relative to the workspace root."},
                "max_lines": {"type": "integer", "description": "Stop after this many lines.", "minimum": 1},
                "mode": {"type": "string", "enum": ["text", "bytes"]},
            },
            "required": ["path"],
        },
    },
}
RUN_TESTS = {"type": "function", "function": {"name": "run_tests", "description": "Run the test suite <quietly> & fast."}}
TOOLS = [READ_FILE, RUN_TESTS]

SYSTEM = {"role": "system", "content": "You are a careful coding agent."}
USER = {"role": "user", "content": "Fix the failing test in src/app.py — the one about `<div>` & 'quotes'."}
TOOL_TURN = [
    {
        "role": "assistant",
        "content": "Let me look at the file and run the tests.",
        "tool_calls": [
            {
                "id": "call_0123456789abcdef01234567",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "src/app.py", "max_lines": 50}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_0123456789abcdef01234567", "content": "def add(a, b):\n    return a - b\n"},
    {"role": "tool", "tool_call_id": "call_2", "content": "FAILED test_add - assert -1 == 3"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_3", "type": "function", "function": {"name": "read_file", "arguments": {"path": "tests/t.py"}}},
    ]},
    {"role": "tool", "tool_call_id": "call_3", "content": "assert add(1, 2) == 3"},
    {"role": "assistant", "content": "The bug is `a - b`; it should be `a + b`."},
]

CONVERSATIONS = {
    "user only": [USER],
    "system + user": [SYSTEM, USER],
    "multi-turn": [SYSTEM, USER, {"role": "assistant", "content": "Which test?"}, {"role": "user", "content": "test_add"}],
    "tool calls and results": [SYSTEM, USER, *TOOL_TURN],
    "tool calls without system": [USER, *TOOL_TURN, {"role": "user", "content": "Thanks! 日本語 😀"}],
}


@pytest.fixture(scope="module", params=[QWEN25, QWEN3], ids=["qwen2.5 json", "qwen3-coder xml"])
def pair(request):
    """(our template, HF tokenizer) for one checkpoint."""
    hf = AutoTokenizer.from_pretrained(request.param)
    return ChatTemplate.for_tokenizer(Tokenizer.from_path(request.param)), hf


def hf_render(hf, messages, tools=None, add_generation_prompt=True, **kwargs) -> str:
    """transformers on the same input; it expects arguments as dicts and schemas on every tool, like we produce."""
    return hf.apply_chat_template(
        normalize_messages(messages),
        tools=normalize_tools(tools),
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
        **kwargs,
    )


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("with_tools", [False, True])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_matches_transformers(pair, name, with_tools, add_generation_prompt):
    ours, hf = pair
    messages, tools = CONVERSATIONS[name], TOOLS if with_tools else None
    rendered = ours.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
    assert rendered == hf_render(hf, messages, tools, add_generation_prompt)
    assert rendered.endswith("<|im_start|>assistant\n") == add_generation_prompt


def test_tool_calls_render_in_each_format(pair):
    ours, _ = pair
    rendered = ours.render(CONVERSATIONS["tool calls and results"], tools=TOOLS)
    if "<function=" in ours.source:
        assert "<function=read_file>\n<parameter=path>\nsrc/app.py\n</parameter>\n<parameter=max_lines>\n50\n" in rendered
        assert "<function=run_tests>\n</function>" in rendered
    else:
        assert '{"name": "read_file", "arguments": {"path": "src/app.py", "max_lines": 50}}' in rendered
        assert '{"name": "run_tests", "arguments": {}}' in rendered
    assert rendered.count("<tool_response>") == 3


def test_extra_kwargs_reach_the_template():
    template = ChatTemplate("{{ 'think' if enable_thinking else 'no-think' }}|{{ bos_token }}|{{ eos_token }}", "<s>", "</s>")
    assert template.render([USER], enable_thinking=True) == "think|<s>|</s>"
    assert template.render([USER], enable_thinking=False) == "no-think|<s>|</s>"


def test_enable_thinking_passes_through_like_transformers(pair):
    ours, hf = pair
    messages = CONVERSATIONS["system + user"]
    assert ours.render(messages, enable_thinking=False) == hf_render(hf, messages, enable_thinking=False)


def test_content_parts_are_joined():
    messages = [{"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}]
    assert normalize_messages(messages)[0]["content"] == "first\nsecond"
    with pytest.raises(QcoderError, match="image_url"):
        normalize_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_normalization_does_not_touch_the_input():
    messages = json.loads(json.dumps(CONVERSATIONS["tool calls and results"]))
    before = json.dumps(messages)
    normalized = normalize_messages(messages)
    assert json.dumps(messages) == before
    assert normalized[2]["tool_calls"][0]["function"]["arguments"] == {"path": "src/app.py", "max_lines": 50}
    assert "content" not in normalized[5]  # None values are dropped, as transformers does
    tools = normalize_tools([RUN_TESTS])
    assert tools[0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert "parameters" not in RUN_TESTS["function"]


def test_reasoning_is_passed_under_every_name(pair):
    ours, hf = pair
    messages = [USER, {"role": "assistant", "content": "4", "reasoning": "2+2"}]
    assert normalize_messages(messages)[1]["reasoning_content"] == "2+2"
    assert normalize_messages(messages)[1]["thinking"] == "2+2"
    assert ours.render(messages) == hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    shows = ChatTemplate("{% for m in messages %}{{ m.reasoning_content }}{% endfor %}")
    assert shows.render([{"role": "assistant", "content": "x", "thinking": "t"}]) == "t"


def test_bad_tool_call_arguments_are_a_clear_error():
    bad = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}]}]
    with pytest.raises(QcoderError, match="arguments of tool call 'f' are not valid JSON"):
        normalize_messages(bad)


def test_sandbox_escape_is_refused():
    template = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(QcoderError, match="chat template error: .*unsafe"):
        template.render([USER])
    with pytest.raises(QcoderError, match="underscore"):
        ChatTemplate("{% set ns = namespace(__class__=1) %}").render([USER])


def test_raise_exception_and_syntax_errors_become_qcoder_errors():
    with pytest.raises(QcoderError, match="chat template error: only user turns"):
        ChatTemplate("{{ raise_exception('only user turns') }}").render([USER])
    with pytest.raises(QcoderError, match="invalid chat template"):
        ChatTemplate("{% if %}")
    with pytest.raises(QcoderError, match="empty conversation"):
        ChatTemplate("x").render([])


def test_tojson_does_not_html_escape_and_helpers_exist():
    template = ChatTemplate("{{ tools | tojson }}{% for i in range(3) %}{% if i == 1 %}{% break %}{% endif %}{{ i }}"
                            "{% endfor %}{{ strftime_now('%Y') | length }}")
    rendered = template.render([USER], tools=[{"function": {"name": "a<b>&c", "parameters": {}}}])
    assert rendered == '[{"function": {"name": "a<b>&c", "parameters": {}}}]04'


def test_shipped_template_is_the_official_one_and_used_as_fallback():
    official = json.loads((QWEN3 / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]
    assert default_template() == official

    class NoTemplate:
        chat_template, bos_token, eos_token = None, None, "<|im_end|>"

    assert ChatTemplate.for_tokenizer(NoTemplate()).source == official


@pytest.mark.parametrize("begun", ["```python\ndef f(", "Sure: ", "  padded text  "])
def test_continue_final_message_matches_transformers(pair, begun):
    ours, hf = pair
    messages = [SYSTEM, USER, {"role": "assistant", "content": begun}]
    rendered = ours.render(messages, continue_final_message=True)
    assert rendered == hf_render(hf, messages, add_generation_prompt=False, continue_final_message=True)
    assert rendered.endswith(begun)
    with pytest.raises(QcoderError, match="assistant message with text last"):
        ours.render([SYSTEM, USER], continue_final_message=True)
