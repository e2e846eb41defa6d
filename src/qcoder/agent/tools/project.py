"""Project-defined tools from settings: `[tools.test] command = "pytest -q"`, `[tools.lint]`, `[tools.format]`.

Each becomes a tool named after its table, running its command through the same shell as
run_shell_command. The test tool also drives the loop's verification rounds.
"""

from __future__ import annotations

from qcoder.agent.tools.base import Tool
from qcoder.agent.tools.shell import Shell

DEFAULT_DESCRIPTIONS = {
    "test": "Run the project's tests",
    "lint": "Run the project's linter",
    "format": "Format the project's code",
}


def project_tools(settings: dict, shell: Shell) -> list[Tool]:
    tools = []
    for name, spec in (settings.get("tools") or {}).items():
        if not isinstance(spec, dict) or not spec.get("command"):
            continue
        command, timeout = spec["command"], spec.get("timeout", 600)
        description = spec.get("description") or DEFAULT_DESCRIPTIONS.get(name, f"Run `{command}`")
        tools.append(Tool(
            name, f"{description} (`{command}`).",
            {"type": "object", "properties": {}, "required": []},
            # No parameters: small models pass the whole command again as an argument; ignore what they send.
            lambda _c=command, _t=timeout, **_: shell.run(_c, _t).text(),
            kind="project",
        ))
    return tools
