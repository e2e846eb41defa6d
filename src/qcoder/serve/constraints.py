"""Request fields -> the engine's structured-output Constraint (qcoder/engine/structured.py).

Chat completions: `tool_choice` "required" (one call of an offered tool) or a named function (one call of it),
`response_format` json_object / json_schema. Both routes: vLLM's extras `structured_outputs` {json, regex, choice,
grammar} and `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar`. At most one may be given. The
constraint is compiled here, before the request is admitted, so a schema or grammar the compiler rejects is a 400
that names the problem.
"""

from __future__ import annotations

import json

from qcoder.engine.structured import Constraint
from qcoder.errors import QcoderError
from qcoder.serve.errors import bad_request
from qcoder.serve.protocol import NamedToolChoice, SamplingFields
from qcoder.serve.state import ServerState


def for_request(state: ServerState, req: SamplingFields, tools: list[dict] | None = None) -> Constraint | None:
    """The request's constraint, compiled and checked; None when it asks for none. Raises APIError(400)."""
    found = [*_tool_choice(state, req, tools), *_response_format(req), *_vllm_extras(req)]
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(param for param, _ in found)
        raise bad_request(f"give at most one structured-output option; this request has {names}", param=found[1][0])
    param, constraint = found[0]
    try:
        state.engine.structured.check(constraint)
    except QcoderError as exc:
        raise bad_request(f"{param}: {exc}", param=param) from exc
    return constraint


def _tool_choice(state: ServerState, req, tools: list[dict] | None) -> list[tuple[str, Constraint]]:
    choice = getattr(req, "tool_choice", None)
    if not tools or not (choice == "required" or isinstance(choice, NamedToolChoice)):
        return []
    if isinstance(choice, NamedToolChoice):
        tools = [t for t in tools if t["function"]["name"] == choice.function.name]
    tool_format = "xml" if state.tool_parser.bare_function_tags else "json"  # what this server parses
    return [("tool_choice", Constraint.tool_call(tools, tool_format=tool_format))]


def _response_format(req) -> list[tuple[str, Constraint]]:
    fmt = getattr(req, "response_format", None)
    if fmt is None or fmt.type == "text":
        return []
    if fmt.type == "json_object":
        return [("response_format", Constraint.json_schema())]
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise bad_request(
            "response_format of type json_schema needs json_schema.schema", param="response_format.json_schema"
        )
    return [("response_format", Constraint.json_schema(fmt.json_schema.schema_))]


def _vllm_extras(req: SamplingFields) -> list[tuple[str, Constraint]]:
    found = []
    outputs = req.structured_outputs
    options = [
        ("guided_json", req.guided_json, _json),
        ("guided_regex", req.guided_regex, Constraint.regex),
        ("guided_choice", req.guided_choice, Constraint.choice),
        ("guided_grammar", req.guided_grammar, Constraint.grammar),
    ]
    if outputs is not None:
        options += [
            ("structured_outputs.json", outputs.json_, _json),
            ("structured_outputs.regex", outputs.regex, Constraint.regex),
            ("structured_outputs.choice", outputs.choice, Constraint.choice),
            ("structured_outputs.grammar", outputs.grammar, Constraint.grammar),
        ]
    for param, value, build in options:
        if value is not None:
            try:
                found.append((param, build(value)))
            except QcoderError as exc:
                raise bad_request(f"{param}: {exc}", param=param) from exc
    return found


def _json(value) -> Constraint:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise QcoderError(f"the schema is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise QcoderError("the schema must be a JSON object")
    return Constraint.json_schema(value)
