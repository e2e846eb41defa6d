"""MCP servers (stdio or streamable HTTP) from settings; their tools join the built-ins as `server__tool`.

    [mcp_servers.files]
    command = "python"
    args = ["server.py"]
    env = {"ROOT": "."}
    [mcp_servers.web]
    url = "http://127.0.0.1:8000/mcp"
    trust = true          # its tools run without asking in default and auto-edit mode (never in plan mode)
    read_only = true      # its tools only read: they run in every mode, plan included

A server's tools otherwise need approval like shell commands: what a tool does is only known to its server.

The official SDK is async; one background thread runs an event loop that holds every connection
open, and tool calls are submitted to it from the synchronous agent loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from pathlib import Path

from qcoder.agent.tools.base import Tool, ToolError
from qcoder.errors import QcoderError


class McpServers:
    def __init__(self, config: dict, workspace: Path, timeout: float = 60.0):
        self.timeout = timeout
        self.workspace = workspace
        self.tools: list[Tool] = []
        self._sessions: dict = {}
        self._stops: list = []
        self._tasks: list[concurrent.futures.Future] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qcoder-mcp", daemon=True)
        self._thread.start()
        try:
            for name, spec in config.items():
                self._connect(name, spec)
        except BaseException:
            self.close()
            raise

    def _connect(self, name: str, spec: dict) -> None:
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._tasks.append(asyncio.run_coroutine_threadsafe(self._hold(name, spec, ready), self._loop))
        try:
            session, listed, stop = ready.result(self.timeout)
        except Exception as exc:
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # anyio wraps the real cause
                exc = exc.exceptions[0]
            raise QcoderError(f"MCP server {name!r} failed to start: {type(exc).__name__}: {exc}") from exc
        self._sessions[name] = session
        self._stops.append(stop)
        kind = "read" if spec.get("read_only") else "trusted" if spec.get("trust") else "execute"
        for t in listed:
            schema = getattr(t, "input_schema", None) or getattr(t, "inputSchema", None) or {"type": "object"}
            self.tools.append(Tool(f"{name}__{t.name}", t.description or t.name, dict(schema),
                                   lambda _s=name, _t=t.name, **args: self.call(_s, _t, args), kind=kind))

    async def _hold(self, name: str, spec: dict, ready: concurrent.futures.Future) -> None:
        """Open the connection, report it, and keep it open (same task) until close()."""
        from mcp import ClientSession

        stop = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if spec.get("url"):
                    streams = await stack.enter_async_context(_http_client(spec["url"]))
                else:
                    from mcp import StdioServerParameters
                    from mcp.client.stdio import get_default_environment, stdio_client

                    if not spec.get("command"):
                        raise ValueError("needs `command` (stdio) or `url` (streamable HTTP)")
                    params = StdioServerParameters(
                        command=spec["command"], args=list(spec.get("args", [])),
                        env={**get_default_environment(), **spec.get("env", {})},
                        cwd=str(self.workspace))
                    streams = await stack.enter_async_context(stdio_client(params))
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                await session.initialize()
                listed = await session.list_tools()
                ready.set_result((session, listed.tools, stop))
                await stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)

    def call(self, server: str, name: str, args: dict) -> str:
        future = asyncio.run_coroutine_threadsafe(self._sessions[server].call_tool(name, args), self._loop)
        result = future.result(self.timeout)
        parts = []
        for item in getattr(result, "content", None) or []:
            text = getattr(item, "text", None)
            parts.append(text if text is not None else json.dumps(item.model_dump(mode="json")))
        text = "\n".join(parts) or "(no output)"
        if getattr(result, "is_error", None) or getattr(result, "isError", None):
            raise ToolError(text)
        return text

    def close(self) -> None:
        for stop in self._stops:
            self._loop.call_soon_threadsafe(stop.set)
        for task in self._tasks:
            with contextlib.suppress(Exception):
                task.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _http_client(url: str):
    # mcp 2.x names it streamable_http_client; 1.x streamablehttp_client (yielding a third item).
    from mcp.client import streamable_http

    factory = getattr(streamable_http, "streamable_http_client", None) or streamable_http.streamablehttp_client
    return factory(url)
