"""What a tool is: a name, a short description, a JSON schema for its arguments, and a function.

`kind` drives permissions: "read" tools never change anything (they run even in plan mode), "edit" tools
write files, "shell" tools run commands, "project" tools run the commands the user put in the settings,
"trusted" tools come from an MCP server the user marked `trust = true`, and "execute" tools may do
anything. "execute" is the default: a tool is read-only only when it says so. `@tool` turns a typed
Python function with a docstring into a Tool (plugins use it: `@tool(kind="read")` for a read-only one).
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass


class ToolError(Exception):
    """A failure the model should read and fix (bad path, no match, ...); never a crash of the loop."""


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object
    func: Callable[..., str]
    kind: str = "execute"  # read | edit | shell | project | trusted | execute

    def schema(self) -> dict:
        """The OpenAI `tools` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _json_type(annotation) -> dict:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _json_type(inner[0]) if len(inner) == 1 else {}
    if origin in (list, dict):
        return {"type": _JSON_TYPES[origin]}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    return {}


def tool(func: Callable | None = None, *, name: str | None = None, kind: str = "execute"):
    """Decorator: `@tool` or `@tool(kind="read")` on `def f(path: str, n: int = 3) -> str: "Doc."`.

    Parameters without a default are required. A line `name: text` in the docstring's body describes
    a parameter.
    """

    def wrap(f: Callable) -> Tool:
        hints = typing.get_type_hints(f)
        doc = inspect.getdoc(f) or ""
        summary, _, body = doc.partition("\n\n")
        param_docs = {}
        for line in body.splitlines():
            key, sep, text = line.strip().partition(":")
            if sep and key.isidentifier():
                param_docs[key] = text.strip()
        properties, required = {}, []
        for pname, param in inspect.signature(f).parameters.items():
            prop = _json_type(hints.get(pname, str))
            if pname in param_docs:
                prop["description"] = param_docs[pname]
            properties[pname] = prop
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        schema = {"type": "object", "properties": properties, "required": required}
        return Tool(name or f.__name__, summary.strip() or f.__name__, schema, f, kind)

    return wrap(func) if func is not None else wrap


def format_result(value) -> str:
    """Tool functions may return anything; the model reads text."""
    return value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
