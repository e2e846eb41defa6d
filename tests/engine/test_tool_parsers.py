"""Tool-call parsing of realistic model outputs, in one go and streamed in every chunking."""

import json
import random
import re

import pytest

from qcoder.engine.tool_parsers import (
    ArgumentsDelta,
    ContentDelta,
    ToolCallStart,
    convert_parameter,
    get_tool_parser,
)
from qcoder.errors import QcoderError
from tests.conftest import SHARED_DATA, needs_shared_data


def tool(name, properties=None, required=()):
    function = {"name": name, "description": f"{name} tool"}
    if properties is not None:
        function["parameters"] = {"type": "object", "properties": properties, "required": list(required)}
    return {"type": "function", "function": function}


TOOLS = [
    tool("read_file", {"path": {"type": "string"}, "max_lines": {"type": "integer"}}, ["path"]),
    tool("write_file", {"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]),
    tool(
        "run",
        {
            "command": {"type": "string"},
            "timeout": {"type": "number"},
            "env": {"type": "object"},
            "args": {"type": "array"},
            "verbose": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
        },
        ["command"],
    ),
    tool("list_dir"),  # takes no parameters
]
XML = get_tool_parser("qwen3_coder")
HERMES = get_tool_parser("hermes")

PYTHON_SOURCE = 'def greet(name: str) -> str:\n    """Say hi — 你好 😀."""\n    return f"<b>{name}</b> & \\"co\\""\n'

# (parser, model output, expected content, expected [(name, arguments dict)])
CASES = {
    "xml single call with code": (
        XML,
        "I'll create the file now.\n\n<tool_call>\n<function=write_file>\n<parameter=path>\nsrc/greet.py\n</parameter>\n"
        f"<parameter=content>\n{PYTHON_SOURCE}\n</parameter>\n</function>\n</tool_call>",
        "I'll create the file now.",
        [("write_file", {"path": "src/greet.py", "content": PYTHON_SOURCE})],
    ),
    "xml parallel calls, typed values": (
        XML,
        "<tool_call>\n<function=read_file>\n<parameter=path>\nREADME.md\n</parameter>\n<parameter=max_lines>\n40\n"
        "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=run>\n<parameter=command>\npytest -x\n"
        "</parameter>\n<parameter=timeout>\n2.5\n</parameter>\n<parameter=env>\n{\"CI\": \"1\"}\n</parameter>\n"
        "<parameter=args>\n[\"-q\", 3]\n</parameter>\n<parameter=verbose>\nTrue\n</parameter>\n<parameter=note>\nnull\n"
        "</parameter>\n</function>\n</tool_call>",
        "",
        [
            ("read_file", {"path": "README.md", "max_lines": 40}),
            ("run", {"command": "pytest -x", "timeout": 2.5, "env": {"CI": "1"}, "args": ["-q", 3], "verbose": True,
                     "note": None}),
        ],
    ),
    "xml values that do not fit the schema stay text": (
        XML,
        "<tool_call>\n<function=read_file>\n<parameter=path>\n\n  two newlines kept once  \n\n</parameter>\n"
        "<parameter=max_lines>\nten\n</parameter>\n<parameter=extra>\n7\n</parameter>\n</function>\n</tool_call>",
        "",
        [("read_file", {"path": "\n  two newlines kept once  \n", "max_lines": "ten", "extra": "7"})],
    ),
    "xml without tool_call wrapper and closing tag": (
        XML,
        "Listing.\n<function=list_dir>\n</function>\n<function=read_file>\n<parameter=path>a.py</parameter>\n</function>",
        "Listing.",
        [("list_dir", {}), ("read_file", {"path": "a.py"})],
    ),
    "xml truncated inside a value": (
        XML,
        "Writing.\n<tool_call>\n<function=write_file>\n<parameter=path>\nx.py\n</parameter>\n<parameter=content>\nimport o",
        "Writing.\n<tool_call>\n<function=write_file>\n<parameter=path>\nx.py\n</parameter>\n<parameter=content>\nimport o",
        [],
    ),
    "xml malformed body, then a good call": (
        XML,
        "See <tool_call> in the docs.\n<tool_call>\n<function=list_dir>\n</function>\n</tool_call>\nDone.",
        "See <tool_call> in the docs.Done.",
        [("list_dir", {})],
    ),
    "xml cut off in the function name": (XML, "ok <tool_call>\n<function=read_fi", "ok <tool_call>\n<function=read_fi", []),
    "plain text with angle brackets": (
        XML,
        "Use `a < b` and <tool_c or <function> tags; <parameter=x> is fine.",
        "Use `a < b` and <tool_c or <function> tags; <parameter=x> is fine.",
        [],
    ),
    "hermes single call": (
        HERMES,
        'Let me check.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "src/app.py", "max_lines": 20}}\n'
        "</tool_call>",
        "Let me check.",
        [("read_file", {"path": "src/app.py", "max_lines": 20})],
    ),
    "hermes parallel, last one unclosed, double-encoded arguments": (
        HERMES,
        '<tool_call>\n{"name": "list_dir", "arguments": {}}\n</tool_call>\n<tool_call>\n'
        '{"name": "run", "arguments": "{\\"command\\": \\"ls -la\\"}"}\n',
        "",
        [("list_dir", {}), ("run", {"command": "ls -la"})],
    ),
    "hermes invalid json is content": (
        HERMES,
        'Try:\n<tool_call>\n{"name": "run", "arguments": {"command": "ls"}\n</tool_call>',
        'Try:\n<tool_call>\n{"name": "run", "arguments": {"command": "ls"}\n</tool_call>',
        [],
    ),
    "hermes parser reads an xml body": (
        HERMES,
        "<tool_call>\n<function=read_file>\n<parameter=path>\nb.py\n</parameter>\n</function>\n</tool_call>",
        "",
        [("read_file", {"path": "b.py"})],
    ),
    "fenced json rescue": (
        HERMES,
        '```json\n{"name": "read_file", "arguments": {"path": "main.py"}}\n```\n\n'
        '```json\n{"name": "run", "arguments": {"command": "python main.py"}}\n```\n',
        "",
        [("read_file", {"path": "main.py"}), ("run", {"command": "python main.py"})],
    ),
    "bare json rescue": (XML, '{"name": "list_dir", "arguments": {}}', "", [("list_dir", {})]),
    "fenced json of an unknown tool stays content": (
        XML,
        '```json\n{"name": "delete_everything", "arguments": {}}\n```',
        '```json\n{"name": "delete_everything", "arguments": {}}\n```',
        [],
    ),
    "fenced json with unfitting arguments stays content": (
        XML,
        '```json\n{"name": "read_file", "arguments": {"max_lines": 3}}\n```',
        '```json\n{"name": "read_file", "arguments": {"max_lines": 3}}\n```',
        [],
    ),
    "fenced json followed by prose stays content": (
        HERMES,
        '```json\n{"name": "list_dir", "arguments": {}}\n```\nThis lists the directory.',
        '```json\n{"name": "list_dir", "arguments": {}}\n```\nThis lists the directory.',
        [],
    ),
    "reply opening with json, then a real call": (
        HERMES,
        '{"status": "ok"} so now:\n<tool_call>\n{"name": "list_dir", "arguments": {}}\n</tool_call>',
        '{"status": "ok"} so now:',
        [("list_dir", {})],
    ),
    "a python code answer is content": (
        HERMES,
        "```python\nprint('hi')\n```\n",
        "```python\nprint('hi')\n```\n",
        [],
    ),
}
NO_TOOLS_CASE = '```json\n{"name": "read_file", "arguments": {"path": "main.py"}}\n```'


def calls_of(parsed):
    return [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls]


@pytest.mark.parametrize("case", CASES)
def test_parse(case):
    parser, text, content, calls = CASES[case]
    parsed = parser.parse(text, TOOLS)
    assert parsed.content == content
    assert calls_of(parsed) == calls
    for call in parsed.tool_calls:
        assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)
    assert len({c.id for c in parsed.tool_calls}) == len(parsed.tool_calls)


def chunkings(text: str, seed: int):
    yield list(text)
    rng = random.Random(seed)
    for _ in range(4):
        pieces, i = [], 0
        while i < len(text):
            n = rng.randint(1, 12)
            pieces.append(text[i : i + n])
            i += n
        yield pieces


def run_stream(parser, pieces, tools=TOOLS):
    """(content, {index: [id, name, arguments text]}) from streaming the pieces."""
    stream = parser.stream(tools)
    events = [event for piece in pieces for event in stream.feed(piece)] + stream.finish()
    content, calls = "", {}
    for event in events:
        if isinstance(event, ContentDelta):
            content += event.text
        elif isinstance(event, ToolCallStart):
            assert event.index not in calls
            calls[event.index] = [event.id, event.name, ""]
        else:
            assert isinstance(event, ArgumentsDelta)
            calls[event.index][2] += event.text
    return content, calls


@pytest.mark.parametrize("case", CASES)
def test_streaming_equals_parse(case):
    parser, text, content, calls = CASES[case]
    for pieces in chunkings(text, seed=len(case)):
        got_content, got_calls = run_stream(parser, pieces)
        assert got_content == content
        complete = []
        for _, name, arguments in got_calls.values():
            try:
                complete.append((name, json.loads(arguments)))
            except json.JSONDecodeError:
                pass  # announced, then cut off: its text came back as content
        assert complete == calls


def test_no_tools_means_no_rescue():
    assert HERMES.parse(NO_TOOLS_CASE, None).tool_calls == []
    assert HERMES.parse(NO_TOOLS_CASE, None).content == NO_TOOLS_CASE
    assert run_stream(HERMES, list(NO_TOOLS_CASE), tools=None) == (NO_TOOLS_CASE, {})


def test_partial_tag_is_never_leaked_and_call_starts_early():
    stream = XML.stream(TOOLS)
    assert stream.feed("Reading it. <tool_c") == [ContentDelta("Reading it.")]
    assert stream.feed("all>\n<function=read_") == []
    started = stream.feed("file>\n<parameter=path>\nsrc/")
    assert isinstance(started[0], ToolCallStart) and started[0].name == "read_file"
    assert "".join(e.text for e in started[1:]) == '{"path": "src/'
    assert stream.feed("app.py\n</param") == [ArgumentsDelta(0, "app.py")]
    assert stream.feed("eter>\n</function>\n</tool_call>") == [ArgumentsDelta(0, '"'), ArgumentsDelta(0, "}")]
    assert stream.finish() == []


def test_code_answers_are_not_held_back():
    stream = HERMES.stream(TOOLS)
    assert stream.feed("```python\nprint(1)") == [ContentDelta("```python\nprint(1)")]


def test_truncated_call_in_a_stream_returns_its_text():
    content, calls = run_stream(XML, ["<tool_call>\n<function=run>\n<parameter=command>\nmake"])
    assert content == "<tool_call>\n<function=run>\n<parameter=command>\nmake"
    assert [name for _, name, _ in calls.values()] == ["run"]  # announced before the cut; arguments incomplete
    with pytest.raises(json.JSONDecodeError):
        json.loads(calls[0][2])


def test_convert_parameter():
    assert convert_parameter("42", {"type": "integer"}) == 42
    assert convert_parameter("-1.5e3", {"type": "number"}) == -1500.0
    assert convert_parameter("false", {"type": "boolean"}) is False
    assert convert_parameter('{"a": [1]}', {"type": "object"}) == {"a": [1]}
    assert convert_parameter("[1, 2]", {"type": "object"}) == "[1, 2]"
    assert convert_parameter("null", {"type": ["integer", "null"]}) is None
    assert convert_parameter("7", {"anyOf": [{"type": "integer"}, {"type": "string"}]}) == 7
    assert convert_parameter("007", {"type": "string"}) == "007"
    assert convert_parameter("7", None) == "7"


@needs_shared_data
def test_get_tool_parser():
    data = SHARED_DATA
    qwen3_template = json.loads((data / "qwen3-coder-30b-a3b-instruct" / "tokenizer_config.json").read_text())
    qwen25_template = (data / "qwen2.5-coder-tokenizer" / "chat_template.jinja").read_text()
    assert get_tool_parser("auto", qwen3_template["chat_template"]).bare_function_tags
    assert not get_tool_parser("auto", qwen25_template).bare_function_tags
    assert not get_tool_parser("auto", None).bare_function_tags
    with pytest.raises(QcoderError, match="unknown tool parser 'mistral'"):
        get_tool_parser("mistral")
    # Only the XML parser takes a bare <function= as a call.
    assert HERMES.parse("<function=list_dir>\n</function>", TOOLS).tool_calls == []
