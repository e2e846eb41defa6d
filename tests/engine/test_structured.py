"""Structured decoding on a tiny random model: whatever the model prefers, the output matches the constraint."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from qcoder.engine.engine import LLMEngine
from qcoder.engine.llm import LLM
from qcoder.engine.sampling import SamplingParams
from qcoder.engine.structured import Constraint
from qcoder.engine.tool_parsers import get_tool_parser
from qcoder.errors import QcoderError

# Bounded everywhere (string lengths, number ranges, array sizes), so that even a random model finishes well within
# max_tokens: a valid document is then the only possible outcome.
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "admin": {"type": "boolean"},
        "role": {"enum": ["dev", "ops", "qa"]},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "score": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    },
    "required": ["name", "age", "admin", "role", "tags"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "maxLength": 12},
                    "limit": {"type": "integer", "maximum": 99},
                },
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_mode",
            "description": "Switch the mode.",
            "parameters": {
                "type": "object",
                "properties": {"mode": {"enum": ["fast", "safe"]}, "verbose": {"type": "boolean"}},
                "required": ["mode", "verbose"],
            },
        },
    },
    {"type": "function", "function": {"name": "stop", "description": "Stop (no parameters)."}},
]


@pytest.fixture(scope="module")
def engine(tiny_qwen2):
    return LLMEngine(str(tiny_qwen2), max_model_len=512, max_num_seqs=16)


def run(engine: LLMEngine, prompt_ids: list[int], params: list[SamplingParams]) -> list[tuple[str, str]]:
    """(text, finish_reason) of one request per params, all batched together."""
    texts, reasons = [""] * len(params), [None] * len(params)
    for i, p in enumerate(params):
        engine.add_request(f"r{i}", prompt_ids, p)
    while engine.has_unfinished():
        for out in engine.step():
            i = int(out.request_id[1:])
            texts[i] += out.text_delta
            reasons[i] = out.finish_reason or reasons[i]
    return list(zip(texts, reasons, strict=True))


def sampled(seed: int, constraint: Constraint, max_tokens: int = 160) -> SamplingParams:
    # top_k keeps the sampler cheap (no noise over the whole vocabulary); the mask comes before it, so the
    # top 40 are the 40 best allowed tokens.
    return SamplingParams(max_tokens=max_tokens, temperature=1.0, top_k=40, seed=seed, constraint=constraint)


def test_fifty_seeds_always_give_schema_valid_json(engine):
    prompt = engine.tokenizer.encode("Describe a user as JSON.")
    results = run(engine, prompt, [sampled(seed, Constraint.json_schema(SCHEMA)) for seed in range(50)])
    documents = []
    for text, reason in results:
        assert reason == "stop", text  # ended by the grammar, not by max_tokens
        document = json.loads(text)
        jsonschema.validate(document, SCHEMA)
        documents.append(text)
    assert len(set(documents)) > 10  # the seeds really sampled different documents


def test_json_object_mode_gives_an_object(engine):
    prompt = engine.tokenizer.encode("JSON please")
    for text, reason in run(engine, prompt, [sampled(seed, Constraint.json_schema(), 60) for seed in range(3)]):
        if reason == "stop":  # an unbounded object may run out of tokens; what is there is still a JSON prefix
            assert isinstance(json.loads(text), dict)
        assert text.startswith("{")


def test_regex_choice_and_grammars(engine):
    prompt = engine.tokenizer.encode("Answer:")
    cases = [
        (Constraint.regex(r"[a-z]{2,4}-[0-9]{2}"), lambda t: re.fullmatch(r"[a-z]{2,4}-[0-9]{2}", t)),
        (Constraint.choice(["yes", "no", "maybe later"]), lambda t: t in ("yes", "no", "maybe later")),
        (Constraint.grammar('start: "x=" NUM (";" NUM)*\nNUM: /[0-9]/'), lambda t: re.fullmatch(r"x=\d(;\d)*", t)),
        (Constraint.grammar('root ::= "go " ("left" | "right")'), lambda t: t in ("go left", "go right")),  # GBNF
    ]
    for constraint, check in cases:
        for text, reason in run(engine, prompt, [sampled(seed, constraint, 60) for seed in range(6)]):
            if reason == "stop":
                assert check(text), (constraint.kind, text)
            else:  # the digit list may go on; it never breaks the pattern
                assert constraint.kind == "grammar" and re.fullmatch(r"x=\d(;\d)*;?", text)


@pytest.mark.parametrize("fixture", ["tiny_qwen2", "tiny_qwen3"])
def test_tool_call_constraint_always_gives_one_valid_call(fixture, request):
    """Hermes JSON for the Qwen2.5 tokenizer's template, Qwen3-Coder XML for the Qwen3-Coder one."""
    llm = LLM(str(request.getfixturevalue(fixture)), max_model_len=512, max_num_seqs=16)
    template = llm.engine.chat_template.source
    prompt = llm.chat_prompt_ids([{"role": "user", "content": "Do something."}], TOOLS)
    parser = get_tool_parser("auto", template)
    results = run(llm.engine, prompt, [sampled(seed, Constraint.tool_call(TOOLS), 200) for seed in range(12)])
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in TOOLS}
    names = set()
    for text, reason in results:
        assert reason == "stop", text
        parsed = parser.parse(text, TOOLS)
        assert len(parsed.tool_calls) == 1 and not parsed.content.strip(), text
        call = parsed.tool_calls[0]
        arguments = json.loads(call.arguments)
        jsonschema.validate(arguments, {**(schemas[call.name] or {"type": "object"}), "additionalProperties": False})
        names.add(call.name)
    assert len(names) > 1


def test_answer_or_one_call(engine):
    """The agent's constraint: a plain answer, or text followed by exactly one call; never a broken call."""
    llm = LLM.from_engine(engine)
    prompt = llm.chat_prompt_ids([{"role": "user", "content": "Fix it."}], TOOLS)
    parser = get_tool_parser("auto", engine.chat_template.source)
    constraint = Constraint.tool_call(TOOLS, allow_text=True)
    for text, _ in run(engine, prompt, [sampled(seed, constraint, 40) for seed in range(8)]):
        parsed = parser.parse(text, TOOLS)
        assert len(parsed.tool_calls) <= 1
        if not parsed.tool_calls:
            assert "<tool_call>" not in text and "<function=" not in text, text


def test_constrained_rows_leave_their_neighbours_alone(engine):
    prompt = engine.tokenizer.encode("def add(a, b):")
    free = SamplingParams(max_tokens=24, temperature=0)
    alone = run(engine, prompt, [free])[0]
    mixed = run(engine, prompt, [free, sampled(3, Constraint.json_schema(SCHEMA)), free])
    assert mixed[0] == alone and mixed[2] == alone
    jsonschema.validate(json.loads(mixed[1][0]), SCHEMA)


def test_streamed_text_is_the_whole_text(engine):
    llm = LLM.from_engine(engine)
    params = sampled(7, Constraint.json_schema(SCHEMA))
    pieces = list(llm.stream("Describe a user as JSON.", params))
    assert "".join(pieces) == llm.generate("Describe a user as JSON.", params)[0].text
    assert len(pieces) > 1


@pytest.mark.parametrize(
    "constraint, message",
    [
        (Constraint.json_schema({"type": "object", "properties": {"a": {"type": "strng"}}}), "invalid JSON schema"),
        (Constraint.regex("a(b"), "invalid regex"),
        (Constraint.grammar("start: undefined_rule"), "invalid grammar"),
        (Constraint("json", "not json"), "invalid JSON schema"),
    ],
)
def test_bad_constraints_are_refused_with_the_reason(engine, constraint, message):
    with pytest.raises(QcoderError, match=message):
        engine.structured.check(constraint)
    with pytest.raises(QcoderError, match=message):
        engine.add_request("bad", [1, 2, 3], SamplingParams(constraint=constraint))
    assert "bad" not in engine.requests


def test_the_in_process_agent_client_gets_an_answer_or_one_valid_call(engine):
    from qcoder.client import EngineClient

    client = EngineClient.from_llm(LLM.from_engine(engine), "tiny")
    messages = [{"role": "user", "content": "Fix the bug."}]
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in TOOLS}
    for seed in range(6):
        reply = client.chat(messages, TOOLS, temperature=1.0, top_k=40, seed=seed, max_tokens=60)
        assert len(reply.tool_calls) <= 1
        for call in reply.tool_calls:
            jsonschema.validate(json.loads(call.arguments), {**schemas[call.name], "additionalProperties": False})
        if reply.finish_reason != "length":
            assert "<tool_call>" not in reply.content and "<function=" not in reply.content, reply.content


def test_the_client_json_schema_option_holds_chat_and_samples_to_it(engine):
    """`json_schema=` on the in-process client (what `qcoder review` uses): an enum of quotable lines is kept."""
    from qcoder.ci.review import finding_schema
    from qcoder.client import EngineClient

    client = EngineClient.from_llm(LLM.from_engine(engine), "tiny")
    schema = finding_schema(["def f(x):", "    return x + 1", ""])
    messages = [{"role": "user", "content": "Review it."}]
    replies = [client.chat(messages, json_schema=schema, temperature=1.0, seed=seed, max_tokens=200)
               for seed in range(3)]
    replies += client.sample(messages, 3, json_schema=schema, temperature=1.0, max_tokens=200)
    finished = [r for r in replies if r.finish_reason == "stop"]
    for reply in finished:
        jsonschema.validate(json.loads(reply.content), schema)
    for reply in replies:  # a reply cut by max_tokens is still a prefix of valid JSON: no quote outside the enum
        for quote in re.findall(r'"quote":\s*"((?:[^"\\]|\\.)*)"', reply.content):
            assert json.loads(f'"{quote}"') in ("def f(x):", "    return x + 1"), reply.content


@pytest.mark.parametrize(("text", "allowed"), [
    ("The file has two functions.", True),
    ('<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>', True),
    ('I will look first.\n<tool_call>\n{"name": "stop", "arguments": {}}\n</tool_call>', True),
    # the small models' habits, a call without its marker, bare or fenced, are calls held to the schema too
    ('{"name": "read_file", "arguments": {"path": "a.py"}}', True),
    ('Reading it:\n```json\n{"name": "read_file", "arguments": {"path": "a.py"}}\n```', True),
    ('{"name": "read_file", "arguments": {"path": 7}}', False),
    ('```json\n{"name": "read_file", "arguments" {"path": "a.py"}}\n```', False),
    ('```json\n{"name": "delete", "arguments": {}}\n```', False),
    ('  {"name": "set_mode"', False),
    ('<tool_call>\n{"name": "read_file", "arguments": {"path": 7}}\n</tool_call>', False),
])
def test_answer_or_call_holds_every_call_form_to_the_schema(engine, text, allowed):
    matcher = engine.structured.matcher(Constraint.tool_call(TOOLS, allow_text=True))
    taken = all(matcher.advance(token) for token in engine.tokenizer.encode(text))
    assert (taken and matcher.can_end) is allowed
