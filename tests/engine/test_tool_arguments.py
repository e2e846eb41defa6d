"""Tool-argument checking against the tool's JSON schema: valid calls pass, each mistake is one sentence."""

from qcoder.engine.tool_arguments import check_arguments


def tool(name, properties, required=(), **extra):
    parameters = {"type": "object", "properties": properties, "required": list(required), **extra}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


READ_FILE = tool("read_file", {"path": {"type": "string"}, "max_lines": {"type": "integer"}}, ["path"])
RUN = tool("run", {"command": {"type": "string"}, "note": {"type": ["string", "null"]}}, ["command"])


def test_fitting_arguments_pass():
    assert check_arguments(READ_FILE, {"path": "a"}) is None
    assert check_arguments(READ_FILE, '{"path": "a", "max_lines": 3}') is None
    assert check_arguments(RUN, {"command": "x", "note": None}) is None
    assert check_arguments(RUN, {"command": "x", "extra": 1}) is None  # extra keys allowed unless forbidden
    assert check_arguments({"type": "function", "function": {"name": "ping"}}, {}) is None  # no schema
    assert check_arguments({"type": "function", "function": {"name": "ping"}}, "") is None


def test_each_mistake_is_one_sentence():
    assert check_arguments(READ_FILE, {}) == "read_file: missing required parameter 'path'"
    assert check_arguments(READ_FILE, {"path": "a", "max_lines": "3"}) == (
        "read_file: parameter 'max_lines' must be integer, got str '3'"
    )
    assert "must be integer, got bool" in check_arguments(READ_FILE, {"path": "a", "max_lines": True})
    assert "must be integer, got float" in check_arguments(READ_FILE, {"path": "a", "max_lines": 3.0})
    assert check_arguments(RUN, {"command": 1}) == "run: parameter 'command' must be string, got int 1"
    assert check_arguments(RUN, {"command": "x", "note": 2}) == (
        "run: parameter 'note' must be string or null, got int 2"
    )
    assert "not valid JSON" in check_arguments(RUN, '{"command": ')
    assert check_arguments(RUN, "[1]") == "run: arguments must be a JSON object, got list"
    strict = tool("mode", {"m": {"type": "string", "enum": ["a", "b"]}}, additionalProperties=False)
    assert check_arguments(strict, {"m": "c"}) == "mode: parameter 'm' must be one of ['a', 'b'], got 'c'"
    assert check_arguments(strict, {"x": 1}) == "mode: unknown parameter 'x' (parameters: m)"


def test_values_inside_parameters_and_other_rules_are_checked():
    edits = tool(
        "edit",
        {
            "edits": {
                "type": "array",
                "items": {"type": "object", "properties": {"old": {"type": "string"}}, "required": ["old"]},
            },
            "count": {"type": "integer", "minimum": 1},
        },
    )
    assert check_arguments(edits, {"edits": [{"old": "a"}], "count": 1}) is None
    assert check_arguments(edits, {"edits": [{"old": 1}]}) == "edit: parameter 'edits[0].old' must be string, got int 1"
    assert check_arguments(edits, {"edits": [{}]}) == "edit: parameter 'edits[0]' is missing 'old'"
    assert check_arguments(edits, {"count": 0}) == "edit: parameter 'count': 0 is less than the minimum of 1"
    long_value = check_arguments(tool("t", {"s": {"type": "string", "maxLength": 3}}), {"s": "x" * 10_000})
    assert long_value.startswith("t: parameter 's': ") and len(long_value) < 200


def test_a_broken_schema_only_asks_for_an_object():
    broken = tool("b", {"n": {"type": "nonsense"}}, ["n"])
    assert check_arguments(broken, {}) is None
    assert check_arguments(broken, "[]") == "b: arguments must be a JSON object, got list"
    dangling = tool("d", {"n": {"$ref": "#/$defs/missing"}})
    assert check_arguments(dangling, {"n": 1}) is None
    remote = tool("r", {"n": {"$ref": "http://example.invalid/schema.json"}})
    assert check_arguments(remote, {"n": 1}) is None  # never fetched
