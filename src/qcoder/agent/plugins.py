"""Python plugins: packages that declare tools under the entry-point group `qcoder.tools`.

    [project.entry-points."qcoder.tools"]
    weather = "my_pkg.tools:get_weather"   # a @tool-decorated function, a list of them, or a plain typed function

A plugin tool needs approval (kind "execute") unless it declares itself read-only with `@tool(kind="read")`.

A plugin that fails to load is reported and skipped: one broken package must not stop the agent.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from qcoder.agent.tools.base import Tool, tool

GROUP = "qcoder.tools"


def plugin_tools() -> list[Tool]:
    tools = []
    for ep in entry_points(group=GROUP):
        try:
            obj = ep.load()
            items = obj if isinstance(obj, list | tuple) else [obj]
            tools.extend(item if isinstance(item, Tool) else tool(item) for item in items)
        except Exception as exc:
            print(f"qcoder: warning: plugin {ep.name!r} ({ep.value}) failed to load: {exc}", file=sys.stderr)
    return tools
