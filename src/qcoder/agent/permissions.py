"""Approval: may this tool call run now?

Modes: plan = read-only; default = ask before every write and command; auto-edit = writes freely, asks
before commands; yolo = asks nothing. Settings `[permissions] allow/deny` list shell command prefixes:
deny always wins (checked on every part of a compound command); an allowed prefix runs without asking (only for simple commands: no ; && | ` $( > <).
Headless runs have nobody to ask, so "ask" becomes a denial explained to the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MODES = ("plan", "default", "auto-edit", "yolo")
COMPOUND = re.compile(r"[;&|`<>]|\$\(|\n")


class Permissions:
    def __init__(self, mode: str = "default", allow: list[str] = (), deny: list[str] = (),
                 ask: Callable[[str, dict], str] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown approval mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.allow = list(allow)
        self.deny = list(deny)
        self.ask = ask  # (tool name, arguments) -> "yes" | "no" | "always"; None when headless
        self.always: set[str] = set()

    def check(self, tool, args: dict) -> str | None:
        """None when the call may run, else the reason it may not (for the model)."""
        command = args.get("command") if tool.kind == "shell" and tool.name == "run_shell_command" else None
        if command is not None and any(_matches(part, p) for part in COMPOUND.split(command) for p in self.deny):
            return f"Permission denied: `{command}` matches a deny rule in the settings."
        if tool.kind == "read":
            return None
        if self.mode == "plan":
            return f"Permission denied: {tool.name} changes things and the approval mode is 'plan' (read-only)."
        if self.mode == "yolo" or tool.name in self.always:
            return None
        if tool.kind == "edit" and self.mode == "auto-edit":
            return None
        if tool.kind == "project" and self.mode in ("default", "auto-edit"):
            return None  # commands the user wrote into the project settings
        if command is not None and not COMPOUND.search(command) and any(_matches(command, p) for p in self.allow):
            return None
        if self.ask is None:
            return (f"Permission denied: {tool.name} needs approval in '{self.mode}' mode and nobody can approve "
                    "it in this headless run. Do without it, or the user can rerun with --approval-mode yolo.")
        answer = self.ask(tool.name, args)
        if answer == "always":
            self.always.add(tool.name)
            return None
        return None if answer == "yes" else f"The user declined this {tool.name} call."


def _matches(command: str, prefix: str) -> bool:
    command, prefix = command.strip(), prefix.strip()
    return command == prefix or command.startswith(prefix + " ")
