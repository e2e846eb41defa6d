"""Project-defined tools from settings: `[tools.test] command = "pytest -q"`, `[tools.lint]`, `[tools.format]`.

Each becomes a tool named after its table, running its command through the same shell as
run_shell_command. The test tool also drives the loop's verification rounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qcoder.agent.tools.base import Tool
from qcoder.agent.tools.shell import Shell

if TYPE_CHECKING:
    from qcoder.agent.settings import Settings

DEFAULT_DESCRIPTIONS = {
    "test": "Run the project's tests",
    "lint": "Run the project's linter",
    "format": "Format the project's code",
}


NEXT_STEP = ("\nThe tests fail. Next: read the code the failing test calls (read_file), fix it with edit, "
             "then call test again.")


def _run(shell: Shell, name: str, command: str, timeout: float) -> str:
    result = shell.run(command, timeout)
    # Small models stall after a red test run; naming the next step keeps them moving.
    return result.text() + (NEXT_STEP if name == "test" and not result.ok else "")


def project_tools(settings: Settings, shell: Shell) -> list[Tool]:
    tools = []
    for name, spec in settings.tools.items():
        if not spec.command:
            continue
        command, timeout = spec.command, spec.timeout
        description = spec.description or DEFAULT_DESCRIPTIONS.get(name, f"Run `{command}`")
        tools.append(Tool(
            name, f"{description} (`{command}`). Takes no arguments: {{}}.",
            {"type": "object", "properties": {}, "required": []},
            # No parameters: small models pass the whole command again as an argument; ignore what they send.
            lambda _n=name, _c=command, _t=timeout, **_: _run(shell, _n, _c, _t),
            kind="project",
        ))
    return tools
