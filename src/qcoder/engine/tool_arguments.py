"""Do a tool call's arguments fit the tool's JSON schema? Checked with `jsonschema`, told in one sentence.

The sentence goes back to the model (agent) or decides whether loose JSON was a tool call (rescue), so it
names the parameter and what was wrong: "read_file: parameter 'max_lines' must be integer, got str '3'".

One deliberate difference from plain JSON Schema: "integer" means a JSON integer, not 3.0 too, because
the arguments are handed to Python functions that index and slice with them.
"""

from __future__ import annotations

import json
from functools import lru_cache

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, UndefinedTypeCheck, ValidationError, best_match
from referencing.exceptions import Unresolvable


def _is_integer(_checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer)

MAX_SHOWN = 80  # characters of an offending value quoted back


def is_json_type(value, kind: str) -> bool:
    """Whether `value` is of the JSON Schema type `kind` (names this module does not know accept anything)."""
    try:
        return TYPE_CHECKER.is_type(value, kind)
    except UndefinedTypeCheck:  # the schema says nothing we can check
        return True


def check_arguments(tool_schema: dict, args: dict | str) -> str | None:
    """None when `args` fit the tool's schema, else one precise sentence the model can act on.

    A schema that is itself broken (or points at a $ref that is not inside it) checks nothing beyond the
    arguments being a JSON object: that is the tool author's mistake, not the model's."""
    function = tool_schema.get("function", tool_schema)
    name = function.get("name", "tool")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return f"{name}: arguments are not valid JSON ({e})"
    if not isinstance(args, dict):
        return f"{name}: arguments must be a JSON object, got {type(args).__name__}"
    validator = _validator(json.dumps(function.get("parameters") or {}, sort_keys=True))
    if validator is None:
        return None
    try:
        error = best_match(validator.iter_errors(args))
    except Unresolvable:
        return None
    return None if error is None else f"{name}: {_sentence(error)}"


@lru_cache(maxsize=256)
def _validator(parameters_json: str):
    """A validator for one tool's parameters schema (None when the schema is invalid), built once per schema."""
    schema = json.loads(parameters_json)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError:
        return None
    return validators.extend(cls, type_checker=TYPE_CHECKER)(schema)


def _sentence(error: ValidationError) -> str:
    """The one sentence for the most relevant schema violation."""
    where = _location(error.absolute_path)
    value, rule, schema = error.instance, error.validator, error.schema
    if rule == "required":
        missing = next(key for key in error.validator_value if key not in value)
        return f"missing required parameter {missing!r}" if not where else f"{where} is missing {missing!r}"
    if rule == "additionalProperties" and isinstance(value, dict):
        known = schema.get("properties") or {}
        unknown = next((key for key in value if key not in known), "?")
        listed = ", ".join(known) or "none"
        if not where:
            return f"unknown parameter {unknown!r} (parameters: {listed})"
        return f"{where} has an unknown key {unknown!r} (keys: {listed})"
    if rule == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        shown = f"{value!r:.{MAX_SHOWN}}"
        return f"{where or 'the arguments'} must be {' or '.join(kinds)}, got {type(value).__name__} {shown}"
    if rule == "enum":
        return f"{where or 'the arguments'} must be one of {error.validator_value}, got {value!r:.{MAX_SHOWN}}"
    message = error.message if len(error.message) <= 2 * MAX_SHOWN else error.message[: 2 * MAX_SHOWN] + "..."
    return f"{where or 'the arguments'}: {message}"


def _location(path) -> str:
    """`parameter 'edits[0].old'` for a value inside the arguments; '' for the arguments object itself."""
    parts = list(path)
    if not parts:
        return ""
    text = str(parts[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])
    return f"parameter {text!r}"
