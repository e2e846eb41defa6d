"""The interactive terminal UI: rich for output, prompt_toolkit for input.

Streams the model's text, shows tool calls compactly and edits as coloured diffs, asks before
writes/commands (yes / no / always), and understands a few slash commands.
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from qcoder.agent.factory import build
from qcoder.agent.permissions import MODES
from qcoder.agent.session import Session
from qcoder.errors import QcoderError

HELP = """/help        this list
/clear       start a new session (empty history)
/compress    summarise older turns now
/undo        restore files to their state before the last turn that changed them
/model NAME  switch the model
/tools       list the tools
/approval M  set the approval mode (plan, default, auto-edit, yolo)
/quit        leave"""


class Tui:
    def __init__(self, args, console: Console | None = None, read_line=None):
        self.args = args
        self.console = console or Console(highlight=False)
        self.status = "no task yet"
        self.read_line = read_line or self._prompt_toolkit_reader()
        self.built = build(args, emit=self.on_event, ask=self.ask)
        self.agent = self.built.agent
        self.total = {"prompt_tokens": 0, "completion_tokens": 0}

    # -- output ---------------------------------------------------------------------------------
    def on_event(self, event: str, **data) -> None:
        if event == "delta":
            self.console.print(data["text"], end="", markup=False, highlight=False)
        elif event == "assistant":
            self.console.print()
        elif event == "tool_call":
            self.console.print(f"[cyan]● {data['name']}[/] [dim]{_short(data['arguments'])}[/]")
        elif event == "tool_result":
            self._show_result(data["name"], data["content"])
        elif event == "test_result":
            verdict = "[green]tests pass[/]" if data["passed"] else f"[red]tests fail (exit {data['exit_code']})[/]"
            self.console.print(f"[bold]{verdict}[/] [dim]{data['command']}[/]")
        elif event == "compressed":
            self.console.print(f"[dim]history compressed: {data['before']} -> {data['after']} messages[/]")

    def _show_result(self, name: str, content: str) -> None:
        if name in ("edit", "write_file") and "\n--- a/" in content:
            head, _, diff = content.partition("\n")
            self.console.print(f"  [dim]{head}[/]")
            self.console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
            return
        lines = content.splitlines()
        shown = "\n".join("  " + line for line in lines[:6])
        more = f"\n  ... ({len(lines) - 6} more lines)" if len(lines) > 6 else ""
        style = "red" if content.startswith(("Error", "Permission denied")) else "dim"
        self.console.print(f"[{style}]{escape(shown + more)}[/]")

    def status_line(self, result) -> str:
        for key in self.total:
            self.total[key] += result.tokens.get(key, 0)
        tokens = self.total["prompt_tokens"] + self.total["completion_tokens"]
        return (f"{result.status}: {result.reason} | {result.turns} turns | {tokens} tokens | "
                f"{result.elapsed_s:.1f}s | {self.agent.permissions.mode} | {self.agent.client.model}")

    # -- input ----------------------------------------------------------------------------------
    def ask(self, name: str, args: dict) -> str:
        self.console.print(f"[yellow]Allow {name}[/] {escape(_short(json.dumps(args), 300))}")
        answer = (self.read_line("[y]es / [n]o / [a]lways > ") or "").strip().lower()
        return {"y": "yes", "yes": "yes", "a": "always", "always": "always"}.get(answer, "no")

    def _prompt_toolkit_reader(self):
        from prompt_toolkit import PromptSession

        session = PromptSession(bottom_toolbar=lambda: " " + self.status)  # the status line stays in view
        return lambda message: session.prompt(message)

    def handle(self, line: str) -> bool:
        """Run one line of input (a task or a slash command); False means quit."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            result = self.agent.run(line)
            self.status = self.status_line(result)
            self.console.print(f"[reverse] {escape(self.status)} [/]")
            return True
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            self.console.print(HELP, markup=False)
        elif command == "/clear":
            system = self.agent.messages[0]
            self.agent.session = Session.new(self.agent.workspace.root, model=self.agent.client.model)
            self.agent.session.add(system)
            self.console.print(f"new session {self.agent.session.id}")
        elif command == "/compress":
            done = self.agent.compress()
            self.console.print("compressed" if done else "nothing to compress yet")
        elif command == "/undo":
            try:
                changed = self.agent.checkpoints.undo()
                self.console.print(f"restored {len(changed)} file(s): {', '.join(changed) or '-'}")
            except QcoderError as exc:
                self.console.print(f"[red]{exc}[/]")
        elif command == "/model":
            if rest:
                from qcoder.client import make_client

                self.agent.client = make_client(rest, self.args.base_url, self.args.api_key)
                if self.agent.compressor:
                    self.agent.compressor.client = self.agent.client
            self.console.print(f"model: {self.agent.client.model}")
        elif command == "/tools":
            for tool in self.agent.tools.values():
                self.console.print(f"[cyan]{tool.name}[/] [dim]({tool.kind})[/] {escape(tool.description)}")
        elif command == "/approval":
            if rest and rest not in MODES:
                self.console.print(f"[red]unknown mode {rest!r}; choose one of {', '.join(MODES)}[/]")
            elif rest:
                self.agent.permissions.mode = rest
            self.console.print(f"approval mode: {self.agent.permissions.mode}")
        else:
            self.console.print(f"[red]unknown command {command}[/] (try /help)")
        return True

    def loop(self) -> int:
        self.console.print(f"[bold]qcoder[/] in {self.agent.workspace.root} | model {self.agent.client.model} | "
                           f"/help for commands")
        try:
            while True:
                try:
                    line = self.read_line("> ")
                except KeyboardInterrupt:
                    continue
                if not self.handle(line):
                    return 0
        except EOFError:
            return 0
        finally:
            self.built.close()


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def run_tui(args) -> int:
    return Tui(args).loop()
