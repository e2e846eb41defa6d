"""Grammars (llguidance's Lark dialect) for a tool call in the model's own format, built from OpenAI tool definitions.

- "json" (Qwen2.5 / Hermes): `<tool_call>\\n{"name": NAME, "arguments": {...}}\\n</tool_call>`; the object is one of
  the offered tools' name with arguments valid against that tool's parameter schema.
- "xml" (Qwen3-Coder): `<tool_call>\\n<function=NAME>\\n<parameter=K>\\nV\\n</parameter>\\n...</function>\\n</tool_call>`;
  parameters in schema order, the required ones present, string values text (anything but the closing tag, within
  minLength/maxLength), other values JSON valid against their schema (what the XML parser converts them with).

Arguments a schema does not close (no `additionalProperties`) are closed here: the model may use the declared
parameters only. With `allow_text` the reply is either a plain answer that mentions no call marker, or optional
text followed by exactly one call (in the model's format, or as JSON bare or in a ```json fence); without it, exactly one call and nothing else.
"""

from __future__ import annotations

import json

from qcoder.engine.tool_parsers import _schema_types, tool_functions
from qcoder.errors import QcoderError

# JSON layout the models write (json.dumps' separators); no free whitespace, so sampling cannot wander into it.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# A text that contains no call marker. Small models often write the call without its marker instead, as a bare
# or fenced `{"name": ..., "arguments": ...}`; taken as an answer, such a call would escape the schema (and often
# JSON itself), and merely forbidding it makes them write near-misses (`"arguments" {`). So those two habits are
# calls too: a reply that opens with `{`, or whose text reaches a ```json fence, continues as a schema-valid call.
PLAIN_TEXT = r"/(?s:.+)/ & ~/(?s:.*(<tool_call>|<function=|```json).*)/ & ~/(?s:\s*[{\[].*)/"
UP_TO_CALL = r"/(?s:.*)<tool_call>/ & ~/(?s:.*(<function=|```json).*)/ & ~/(?s:\s*[{\[].*)/"
UP_TO_FENCE = r"/(?s:.*)```json\n/ & ~/(?s:.*(<tool_call>|<function=).*)/ & ~/(?s:\s*[{\[].*)/"
XML_STRING_VALUE = r"/(?s:.*)\n<\/parameter>/"


def lark_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def tool_call_lark(tools: list, fmt: str, allow_text: bool = False) -> str:
    """The Lark grammar of one call of one of `tools` in format "json" or "xml" (see the module doc)."""
    functions = tool_functions(tools)
    if not functions:
        raise QcoderError("a tool-call constraint needs at least one tool")
    if fmt == "json":
        body = [f'body: "\\n" %json {json.dumps(_hermes_schema(functions))} "\\n</tool_call>"']
    elif fmt == "xml":
        body = _xml_rules(functions)
    else:
        raise QcoderError(f"unknown tool-call format {fmt!r} (json or xml)")
    if allow_text:
        call = f"%json {json.dumps(_hermes_schema(functions))}"
        start = ["start: ANSWER | call_start body | fence_start call_json \"\\n```\" | call_json",
                 f"ANSWER: {PLAIN_TEXT}", f"call_start[lazy]: {UP_TO_CALL}", f"fence_start[lazy]: {UP_TO_FENCE}",
                 f"call_json: {call}"]
    else:
        start = ['start: "<tool_call>" body']
    return "\n".join(start + body) + "\n"


def closed_parameters(function: dict) -> dict:
    """A function's parameter schema, closed to undeclared properties unless it says otherwise."""
    parameters = dict(function.get("parameters") or {"type": "object", "properties": {}})
    parameters.setdefault("type", "object")
    parameters.setdefault("additionalProperties", False)
    return parameters


def _hermes_schema(functions: dict[str, dict]) -> dict:
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": closed_parameters(function)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, function in functions.items()
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": JSON_LAYOUT}


def _xml_rules(functions: dict[str, dict]) -> list[str]:
    names = [f"f{i}" for i in range(len(functions))]
    rules = [f'body: "\\n" ({" | ".join(names)}) "</tool_call>"', f"string_value[lazy]: {XML_STRING_VALUE}"]
    for rule, (name, function) in zip(names, functions.items(), strict=True):
        parameters = closed_parameters(function)
        required = set(parameters.get("required") or [])
        parts = []
        for j, (key, schema) in enumerate((parameters.get("properties") or {}).items()):
            param_rule = f"{rule}_p{j}"
            opening = lark_literal(f"<parameter={key}>\n")
            rules.append(f'{param_rule}: {opening} {_xml_value(schema)} "\\n"')
            parts.append(param_rule if key in required else f"[{param_rule}]")
        opening = lark_literal(f"<function={name}>\n")
        rules.append(f'{rule}: {opening} {" ".join(parts)} "</function>\\n"')
    return rules


def _xml_value(schema) -> str:
    """A parameter value and its closing tag: free text for strings, literals for a string enum, else JSON."""
    schema = schema if isinstance(schema, dict) else {}
    close = lark_literal("\n</parameter>")
    enum = schema.get("enum")
    if enum and all(isinstance(v, str) for v in enum):
        return f"({' | '.join(lark_literal(v) for v in enum)}) {close}"
    kinds = _schema_types(schema)
    if kinds == ["string"] and ("maxLength" in schema or "minLength" in schema):
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        return f"/(?s:.{{{low},{'' if high is None else int(high)}}})/ {close}"
    if not kinds or "string" in kinds:
        return "string_value"  # its regex ends with the closing tag
    return f"%json {json.dumps({**schema, 'x-guidance': JSON_LAYOUT})} {close}"
