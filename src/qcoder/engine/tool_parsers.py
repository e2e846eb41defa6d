"""Model output text -> content + structured tool calls, in one go or while streaming.

Formats understood (both parsers read both bodies; they differ only in whether a bare `<function=` starts a call):
- Qwen3-Coder XML: `<tool_call>\\n<function=NAME>\\n<parameter=K>\\nV\\n</parameter>\\n</function>\\n</tool_call>`.
  Values are text; they are converted by the tool's JSON schema (integer, number, boolean, object/array, null).
- Hermes JSON (Qwen2.5): `<tool_call>\\n{"name": NAME, "arguments": {...}}\\n</tool_call>`.
- The small-model habit: with tools given, a reply made only of ```json blocks (or one bare JSON object), each
  {"name": a known tool, "arguments": fitting its schema}, is taken as tool calls. Anything less certain is content.

A call that is malformed or cut off comes back as content, never dropped. Whitespace next to a call is layout.

`parse` runs the stream over the whole text, so streamed and one-go results agree by construction. A stream
announces a call as soon as its name is known and then sends its JSON arguments in pieces; if the call later turns
out broken, that announcement cannot be taken back: its arguments stay incomplete JSON and its raw text follows as
content (`parse` leaves such a call out).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

from qcoder.engine.markers import (
    FUNCTION_CLOSE,
    FUNCTION_OPEN,
    PARAMETER_CLOSE,
    PARAMETER_OPEN,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    held_back_start,
)
from qcoder.engine.tool_arguments import check_arguments, is_json_type
from qcoder.errors import QcoderError

MAX_NAME_LENGTH = 256


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text of an object, as in the OpenAI API


@dataclass
class ParsedOutput:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class ContentDelta:
    text: str


@dataclass
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass
class ArgumentsDelta:
    index: int
    text: str  # the next piece of the call's JSON arguments


ToolStreamEvent = ContentDelta | ToolCallStart | ArgumentsDelta


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


TOOL_PARSERS = ("qwen3_coder", "hermes")


class ToolParser:
    """Parses one model's tool calls; `tools` are the request's OpenAI-style tool definitions (schemas)."""

    def __init__(self, name: str):
        self.name = name
        self.bare_function_tags = name == "qwen3_coder"

    def stream(self, tools: list | None = None) -> ToolCallStream:
        return ToolCallStream(tools, self.bare_function_tags)

    def parse(self, text: str, tools: list | None = None) -> ParsedOutput:
        stream = self.stream(tools)
        events = stream.feed(text) + stream.finish()
        content = "".join(e.text for e in events if isinstance(e, ContentDelta))
        return ParsedOutput(content, stream.completed_calls)


def get_tool_parser(name: str, chat_template: str | None = None) -> ToolParser:
    """"qwen3_coder" (XML), "hermes" (JSON), or "auto": XML when the chat template writes `<function=` calls."""
    if name == "auto":
        name = "qwen3_coder" if chat_template and FUNCTION_OPEN in chat_template else "hermes"
    if name in TOOL_PARSERS:
        return ToolParser(name)
    raise QcoderError(f"unknown tool parser {name!r} (choose qwen3_coder, hermes or auto)")


# ----- schemas -----


def tool_functions(tools: list | None) -> dict[str, dict]:
    """name -> function definition ({"name", "description", "parameters"}) of OpenAI-style tools."""
    functions = {}
    for tool in tools or []:
        tool = tool.model_dump(exclude_none=True) if hasattr(tool, "model_dump") else tool
        function = tool.get("function", tool)
        if isinstance(function.get("name"), str):
            functions[function["name"]] = function
    return functions


def _schema_types(schema: dict | None) -> list[str]:
    """The JSON types a parameter schema allows; [] when it says nothing."""
    if not isinstance(schema, dict):
        return []
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    return [t for option in schema.get("anyOf", schema.get("oneOf", [])) for t in _schema_types(option)]


def convert_parameter(value: str, schema: dict | None):
    """An XML parameter's text as the JSON value its schema asks for; the text itself when it does not fit."""
    types = _schema_types(schema)
    text = value.strip()
    if "null" in types and text == "null":
        return None
    for kind in types:
        if kind == "integer" and re.fullmatch(r"-?\d+", text):
            return int(text)
        if kind == "number" and re.fullmatch(r"-?\d+", text):
            return int(text)
        if kind == "number" and re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
            return float(text)
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind in ("object", "array"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                continue
            if is_json_type(parsed, kind):
                return parsed
    return value


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# ----- the stream -----


class ToolCallStream:
    """Feed text deltas, get ToolStreamEvents; `finish()` releases what was held back at the end."""

    def __init__(self, tools: list | None, bare_function_tags: bool):
        self._functions = tool_functions(tools)
        self._starts = (TOOL_CALL_OPEN, FUNCTION_OPEN) if bare_function_tags else (TOOL_CALL_OPEN,)
        self._state = "text"
        self._buffer = ""  # received, not yet consumed
        self._events: list[ToolStreamEvent] = []
        self.completed_calls: list[ToolCall] = []
        # Content layout: whitespace right before a call, or right after one, is dropped.
        self._held_space = ""
        self._space_before_call = ""  # restored if the call turns out malformed
        self._after_call = False
        self._at_start = True  # nothing consumed yet: the reply may be a fenced-JSON rescue
        # The call being read.
        self._raw = ""  # its text so far, returned as content if it turns out malformed
        self._index = -1
        self._call: ToolCall | None = None  # once announced
        self._param_count = 0
        self._param_schema: dict | None = None
        self._param_value = ""  # non-string values are converted when complete
        self._param_streams = False  # plain string values are streamed as they come
        self._value_started = False
        self._value_tail = ""  # a newline that may be the layout before </parameter>

    def feed(self, delta: str) -> list[ToolStreamEvent]:
        self._buffer += delta
        self._run()
        return self._take_events()

    def finish(self) -> list[ToolStreamEvent]:
        if self._state == "maybe_json" and not self._finish_json_reply():
            # Not a fenced-JSON reply after all: read it like any other text, tags included.
            self._at_start, self._state = False, "text"
            self._run()
        if self._state == "text":
            self._emit_text(self._buffer)
        elif self._state == "json_body":
            self._finish_json_call(self._buffer, closed=False)
        elif self._state != "after_function":
            self._abandon_call(self._buffer)  # cut off inside an XML call
        self._buffer = ""
        if self._held_space:
            self._events.append(ContentDelta(self._held_space))
            self._held_space = ""
        return self._take_events()

    def _run(self) -> None:
        while getattr(self, f"_step_{self._state}")():
            pass

    def _take_events(self) -> list[ToolStreamEvent]:
        events, self._events = self._events, []
        return events

    # ----- content -----

    def _emit_text(self, text: str) -> None:
        if self._after_call:
            text = text.lstrip()
            if not text:
                return
            self._after_call = False
        text = self._held_space + text
        body = text.rstrip()
        self._held_space = text[len(body) :]
        if body:
            self._events.append(ContentDelta(body))

    def _consume(self, n: int) -> str:
        taken, self._buffer = self._buffer[:n], self._buffer[n:]
        self._raw += taken
        return taken

    # ----- steps: each consumes what it can and returns True when it should run again -----

    def _step_text(self) -> bool:
        if self._at_start and self._functions and self._buffer.lstrip()[:1] in ("{", "`"):
            self._state = "maybe_json"
            return True
        if self._buffer.strip():
            self._at_start = False
        found = [(self._buffer.find(m), m) for m in self._starts]
        found = [(i, m) for i, m in found if i >= 0]
        if not found:
            cut = held_back_start(self._buffer, self._starts)
            self._emit_text(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
            return False
        start, marker = min(found)
        self._emit_text(self._buffer[:start])
        self._buffer = self._buffer[start:]
        self._space_before_call, self._held_space, self._raw = self._held_space, "", ""
        self._consume(len(marker))
        self._state = "after_open" if marker == TOOL_CALL_OPEN else "function_name"
        return True

    def _step_after_open(self) -> bool:
        """After <tool_call>: a JSON body or an XML <function=...>."""
        text = self._buffer.lstrip()
        if not text:
            return False
        if text.startswith("{"):
            self._consume(len(self._buffer) - len(text))
            self._state = "json_body"
            return True
        if text.startswith(FUNCTION_OPEN):
            self._consume(len(self._buffer) - len(text) + len(FUNCTION_OPEN))
            self._state = "function_name"
            return True
        if FUNCTION_OPEN.startswith(text):
            return False
        return self._abandon_call("")

    def _read_name(self) -> str | None:
        """The `NAME` of `<function=NAME>` / `<parameter=NAME>` once its `>` arrived; '' when it cannot be one."""
        end = self._buffer.find(">")
        if end < 0:
            broken = "\n" in self._buffer or "<" in self._buffer or len(self._buffer) > MAX_NAME_LENGTH
            return "" if broken else None
        name = self._buffer[:end].strip()
        if not name or "\n" in name or "<" in name:
            return ""
        self._consume(end + 1)
        return name

    def _step_function_name(self) -> bool:
        name = self._read_name()
        if name is None:
            return False
        if not name:
            return self._abandon_call("")
        self._announce(name)
        self._param_count = 0
        self._state = "in_function"
        return True

    def _step_in_function(self) -> bool:
        text = self._buffer.lstrip()
        skipped = len(self._buffer) - len(text)
        if text.startswith(PARAMETER_OPEN):
            self._consume(skipped + len(PARAMETER_OPEN))
            self._state = "parameter_name"
            return True
        if text.startswith(FUNCTION_CLOSE):
            self._consume(skipped + len(FUNCTION_CLOSE))
            self._arguments("}" if self._param_count else "{}")
            self._complete_call()
            self._state = "after_function"
            return True
        if not text or PARAMETER_OPEN.startswith(text) or FUNCTION_CLOSE.startswith(text):
            return False
        return self._abandon_call("")

    def _step_parameter_name(self) -> bool:
        name = self._read_name()
        if name is None:
            return False
        if not name:
            return self._abandon_call("")
        parameters = self._functions.get(self._call.name, {}).get("parameters") or {}
        self._param_schema = (parameters.get("properties") or {}).get(name)
        self._param_value, self._value_started, self._value_tail = "", False, ""
        self._param_streams = _schema_types(self._param_schema) in ([], ["string"])
        opening = ("{" if self._param_count == 0 else ", ") + _dumps(name) + ": "
        self._arguments(opening + ('"' if self._param_streams else ""))
        self._param_count += 1
        self._state = "parameter_value"
        return True

    def _step_parameter_value(self) -> bool:
        end = self._buffer.find(PARAMETER_CLOSE)
        closed = end >= 0
        if not closed:
            end = held_back_start(self._buffer, (PARAMETER_CLOSE,))
        text = self._value_tail + self._consume(end)
        if closed:
            self._consume(len(PARAMETER_CLOSE))
        # One newline after <parameter=K> and one before </parameter> are layout.
        if not self._value_started and text:
            text, self._value_started = (text[1:] if text.startswith("\n") else text), True
        self._value_tail = ""
        if text.endswith("\n"):
            text, self._value_tail = text[:-1], "\n"
        if closed:
            self._value_tail = ""
        if self._param_streams:
            if text:
                self._arguments(_dumps(text)[1:-1])
            if closed:
                self._arguments('"')
        else:
            self._param_value += text
            if closed:
                self._arguments(_dumps(convert_parameter(self._param_value, self._param_schema)))
        if closed:
            self._state = "in_function"
        return closed

    def _step_after_function(self) -> bool:
        """After </function>: an optional </tool_call>, then text again."""
        text = self._buffer.lstrip()
        if text.startswith(TOOL_CALL_CLOSE):
            self._buffer = text[len(TOOL_CALL_CLOSE) :]
        elif not text or TOOL_CALL_CLOSE.startswith(text):
            return False
        self._state = "text"
        return True

    def _step_json_body(self) -> bool:
        if self._call is None:
            match = re.match(r'\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")', self._buffer)
            if match:
                self._announce(json.loads(match[1]))
        end = self._buffer.find(TOOL_CALL_CLOSE)
        if end < 0:
            return False
        body = self._buffer[:end]
        self._buffer = self._buffer[end + len(TOOL_CALL_CLOSE) :]
        self._finish_json_call(body, closed=True)
        return True

    def _step_maybe_json(self) -> bool:
        """A reply that begins like JSON is held until it could no longer be a fenced-JSON tool call."""
        if _could_be_json_calls(self._buffer):
            return False
        self._at_start = False
        self._state = "text"
        return True

    # ----- calls -----

    def _announce(self, name: str) -> None:
        self._index += 1
        self._call = ToolCall(new_call_id(), name, "")
        self._events.append(ToolCallStart(self._index, self._call.id, name))

    def _arguments(self, text: str) -> None:
        self._call.arguments += text
        self._events.append(ArgumentsDelta(self._index, text))

    def _complete_call(self) -> None:
        self.completed_calls.append(self._call)
        self._call, self._raw, self._after_call = None, "", True

    def _abandon_call(self, rest: str) -> bool:
        """The call is malformed: its text so far becomes content, and reading resumes on what follows."""
        raw, self._raw, self._call = self._raw + rest, "", None
        self._held_space = self._space_before_call
        self._emit_text(raw)
        self._state = "text"
        return True

    def _finish_json_call(self, body: str, closed: bool) -> None:
        call = _json_call(body)
        if call is None or (self._call is not None and call[0] != self._call.name):
            self._abandon_call(body + (TOOL_CALL_CLOSE if closed else ""))
            return
        if self._call is None:
            self._announce(call[0])
        self._arguments(_dumps(call[1]))
        self._complete_call()
        self._state = "text"

    def _finish_json_reply(self) -> bool:
        calls = _fenced_json_calls(self._buffer, self._functions)
        if calls is None:
            return False
        self._held_space, self._buffer, self._state = "", "", "text"
        for name, arguments in calls:
            self._announce(name)
            self._arguments(_dumps(arguments))
            self._complete_call()
        return True


def _json_call(body: str) -> tuple[str, dict] | None:
    """(name, arguments) of a Hermes call body, or None when it is not one."""
    try:
        call = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    return (call["name"], arguments) if isinstance(arguments, dict) else None


_FENCE = re.compile(r"\s*```(?:json)?[ \t]*\n(.*?)\n?```\s*", re.DOTALL)


def _fenced_json_calls(text: str, functions: dict[str, dict]) -> list[tuple[str, dict]] | None:
    """The calls of a reply made only of ```json blocks or one bare object, each a valid call of a known tool."""
    bodies, position = [], 0
    if text.strip().startswith("{"):
        bodies = [text]
    else:
        while position < len(text):
            match = _FENCE.match(text, position)
            if not match:
                return None
            bodies.append(match[1])
            position = match.end()
    calls = []
    for body in bodies:
        call = _json_call(body)
        if call is None or call[0] not in functions or check_arguments(functions[call[0]], call[1]) is not None:
            return None
        calls.append(call)
    return calls or None


def _could_be_json_calls(text: str) -> bool:
    """Cheap check while streaming: can `text` still grow into a reply `_fenced_json_calls` accepts?"""
    rest = text.lstrip()
    if rest.startswith("{"):
        return True
    while rest:
        if not "```".startswith(rest[:3]):
            return False
        header_end = rest.find("\n")
        if header_end < 0:
            return "```json".startswith(rest.rstrip(" \t"))
        if rest[3:header_end].strip() not in ("", "json"):
            return False
        close = rest.find("```", header_end)
        if close < 0:
            return True
        rest = rest[close + 3 :].lstrip()
    return True


# ----- the rescue ladder's last rungs: for a reply the template's parser found no call in -----

_FENCED_OBJECT = re.compile(r"```(?:json)?[ \t]*\n(\{.*?\})\s*```", re.S)


def rescue_calls(content: str, tools: list | None) -> ParsedOutput:
    """The calls a lenient reader finds in a reply that the template's parser found none in (the agent's use:
    small models print calls as text). First the most lenient parser (JSON and XML bodies, bare `<function=`),
    then `repair_call`. No call found: the content comes back unchanged."""
    parsed = get_tool_parser("qwen3_coder").parse(content, tools)
    if parsed.tool_calls:
        return parsed
    calls = repair_call(content, tools)
    return ParsedOutput("" if calls else content, calls)


def repair_call(content: str, tools: list | None) -> list[ToolCall]:
    """Last rung, for what small models do: a JSON call of a known tool, maybe missing its last closing braces,
    maybe followed by more calls on further lines, or fenced ```json calls among prose (1.5B models narrate a plan
    around them). Only the first is taken: one call per reply. Arguments that do not fit the schema still make a
    call, so that whoever runs it can say precisely what is wrong."""
    names = tool_functions(tools)
    text = content.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    text = re.sub(r"^[^\w{]{1,8}(?=\{)", "", text)  # `>{"name": ...`: the 0.5B's tail of a tag it half wrote
    candidates = []
    if text.startswith("{"):
        candidates = [text, text.split("\n{", 1)[0]] if "\n{" in text else [text]
    candidates += _FENCED_OBJECT.findall(content)
    for candidate in candidates:
        for closing in ("", "}", "}}"):
            try:  # raw_decode: a call followed by prose still parses
                obj, _ = json.JSONDecoder().raw_decode(candidate.strip() + closing)
            except json.JSONDecodeError:
                continue
            args = obj.get("arguments", {}) if isinstance(obj, dict) else None  # {"name": "test"}: no arguments
            if isinstance(args, dict) and obj.get("name") in names:
                return [ToolCall(new_call_id(), obj["name"], json.dumps(args))]
    return []
