"""Request bodies are read here, before any route, model or tokenizer sees them.

JSON allows `"\\udcff"`: an escaped lone surrogate, which Python decodes into a str that cannot be encoded
as UTF-8, so the tokenizer fails deep inside a route. Bodies that are not UTF-8, nest too deeply for the
parser, or hold such text are refused here with a 400 that names the field. Every route gets this through
`CheckedRoute`, the app's route class.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class BadBody(HTTPException):
    """A 400 raised while reading the body (FastAPI passes HTTPExceptions from there on unchanged)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(400, message)
        self.param = param


def parse(body: bytes) -> Any:
    """The JSON value of `body`; json.JSONDecodeError for broken JSON, BadBody for JSON holding bad text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadBody("the request body nests arrays or objects too deeply") from None
    if ESCAPED_SURROGATE.search(body):  # only escapes can make a lone surrogate; most bodies have none
        where = _lone_surrogate(value)
        if where is not None:
            raise BadBody(f"{where or 'the body'} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
                          "escape); text must be valid Unicode", param=where or None)
    return value


def _lone_surrogate(value: Any) -> str | None:
    """The dotted path of the first string (or key) that cannot be encoded as UTF-8, else None."""
    stack = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _encodes(key):
                    return path or "the body"
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class CheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse(await self.body())
        return self._json


class CheckedRoute(APIRoute):
    """A route whose handler reads its body through CheckedRequest."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def checked(request: Request):
            return await handler(CheckedRequest(request.scope, request.receive))

        return checked
