"""Approval: may this tool call run now?

Modes: plan = read-only; default = ask before every write and command; auto-edit = writes freely, asks
before commands; yolo = asks nothing. Settings `[permissions] allow/deny` list shell commands.
Deny always wins, in every mode: it is matched on what the command runs (command_rules: every part of a
pipeline, list or subshell, wrappers like sudo and bash -c unwrapped, options in any order), and a
command that cannot be read is refused while any deny rule exists. An allow rule is a literal prefix
and only frees a simple command (no ; && | ` $( > < or newline).
Writes to sensitive paths (sensitive.py: .qcoder/, .git/, ...) and commands naming them are asked about
every time, whatever the mode or an earlier "always", except in yolo mode.
Headless runs have nobody to ask, so "ask" becomes a denial explained to the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from qcoder.agent.command_rules import invocations, parse_rule
from qcoder.agent.sensitive import mentions_sensitive, sensitive_path
from qcoder.agent.shell_syntax import Unparseable

MODES = ("plan", "default", "auto-edit", "yolo")
COMPOUND = re.compile(r"[;&|`<>]|\$\(|\n")


class Permissions:
    def __init__(self, mode: str = "default", allow: list[str] = (), deny: list[str] = (),
                 ask: Callable[[str, dict], str] | None = None, workspace: Path | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown approval mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.allow = list(allow)
        self.deny = [parse_rule(rule) for rule in deny]  # ValueError names a malformed rule
        self.deny_text = list(deny)
        self.ask = ask  # (tool name, arguments) -> "yes" | "no" | "always"; None when headless
        self.always: set[str] = set()
        self.workspace = Path(workspace).resolve() if workspace is not None else None

    def check(self, tool, args: dict) -> str | None:
        """None when the call may run, else the reason it may not (for the model)."""
        command = args.get("command") if tool.kind == "shell" and tool.name == "run_shell_command" else None
        if command is not None and self.deny:
            reason = self._denied(command)
            if reason:
                return reason
        if tool.kind == "read":
            return None
        if self.mode == "plan":
            return f"Permission denied: {tool.name} changes things and the approval mode is 'plan' (read-only)."
        if self.mode == "yolo":
            return None
        touchy = self.sensitive(tool, args)
        if touchy:
            return self._ask_each_time(tool, args, touchy)
        if tool.name in self.always:
            return None
        if tool.kind == "edit" and self.mode == "auto-edit":
            return None
        if tool.kind in ("project", "trusted") and self.mode in ("default", "auto-edit"):
            return None  # commands the user wrote into the settings, MCP servers the user trusts
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

    def sensitive(self, tool, args: dict) -> str | None:
        """Why this call needs a person's yes every time (it touches a sensitive path), else None."""
        path = args.get("path")
        if tool.kind == "edit" and self.workspace is not None and isinstance(path, str):
            rel = sensitive_path(self.workspace, path)
            if rel:
                return f"it writes {rel}, a sensitive path (settings, git hooks or files other tools run)"
        command = args.get("command") if tool.kind == "shell" else None
        if isinstance(command, str) and mentions_sensitive(command):
            return "the command names a sensitive path (.git, .qcoder, ...)"
        return None

    def _ask_each_time(self, tool, args: dict, why: str) -> str | None:
        if self.ask is None:
            return (f"Permission denied: {tool.name} needs explicit approval because {why}, and nobody can "
                    "approve it in this headless run.")
        return None if self.ask(tool.name, args) in ("yes", "always") else f"The user declined this {tool.name} call."

    def _denied(self, command: str) -> str | None:
        try:
            runs = invocations(command)
        except Unparseable as exc:
            return (f"Permission denied: `{command}` cannot be checked against the deny rules in the settings "
                    f"({exc}). Write it as plain commands.")
        for rule, text in zip(self.deny, self.deny_text, strict=True):
            if any(rule.covers(run) for run in runs):
                return f"Permission denied: `{command}` matches the deny rule `{text}` in the settings."
        return None


def _matches(command: str, prefix: str) -> bool:
    command, prefix = command.strip(), prefix.strip()
    return command == prefix or command.startswith(prefix + " ")
