"""The interactive terminal UI: rich for output, prompt_toolkit for input.

Streams the model's text, shows tool calls compactly and edits as coloured diffs, asks before
writes/commands (yes / no / always), and understands a few slash commands.
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from qcoder.agent.display import ProseFilter, call_line, describe
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
        self.built = build(args, emit=self.on_event, ask=self.ask, ask_trust=self.ask_trust,
                           warn=lambda text: self.console.print(f"[yellow]{escape(text)}[/]"))
        self.agent = self.built.agent
        self.total = {"prompt_tokens": 0, "completion_tokens": 0}
        self.prose = ProseFilter(self._print)
        self.shown = ""  # what the model's replies showed during the current task

    # -- output ---------------------------------------------------------------------------------
    def on_event(self, event: str, **data) -> None:
        if event == "delta":
            self.prose.feed(data["text"])
        elif event == "assistant":
            self.shown += self.prose.end(data["content"])
        elif event == "tool_result" and data["name"] in ("edit", "write_file") and "\n--- a/" in data["content"]:
            self._show_diff(data["content"].partition("\n")[2])
        elif event in ("code_edit", "undone") and data.get("diff"):  # what was applied, or taken back
            self.console.print(f"[cyan]{escape(describe(event, data))}[/]")
            self._show_diff(data["diff"])
        else:
            line = describe(event, data)
            if line:
                self.console.print(f"[{self._style(event, data)}]{escape(line)}[/]")

    @staticmethod
    def _style(event: str, data: dict) -> str:
        if event in ("test_result",):
            return "bold green" if data["passed"] else "bold red"
        if event == "candidate":
            return "green" if data["status"] == "passed" else "dim"
        if event == "tool_result":
            return "red" if data["content"].startswith(("Error", "Permission denied")) else "dim"
        return "cyan"

    def _show_diff(self, diff: str) -> None:
        self.console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))

    def _print(self, text: str) -> None:
        self.console.print(text, end="", markup=False, highlight=False)

    def status_line(self, result) -> str:
        for key in self.total:
            self.total[key] += result.tokens.get(key, 0)
        tokens = self.total["prompt_tokens"] + self.total["completion_tokens"]
        return (f"{result.status}: {result.reason} | {result.turns} turns | {tokens} tokens | "
                f"{result.elapsed_s:.1f}s | {self.agent.permissions.mode} | {self.agent.client.model}")

    # -- input ----------------------------------------------------------------------------------
    def ask(self, name: str, args: dict) -> str:
        self.console.print(f"[yellow]Allow[/] {escape(call_line(name, json.dumps(args)))}")
        tool = self.agent.tools.get(name)
        why = tool and self.agent.permissions.sensitive(tool, args)
        if why:
            self.console.print(f"[bold red]Careful: {escape(why)}.[/] [dim]'always' counts only for this call.[/]")
        answer = (self.read_line("[y]es / [n]o / [a]lways > ") or "").strip().lower()
        return {"y": "yes", "yes": "yes", "a": "always", "always": "always"}.get(answer, "no")

    def ask_trust(self, enables: list[str]) -> bool:
        """Asked once per folder (the answer is stored): may this folder's settings run commands?"""
        self.console.print("[bold yellow]This folder can run commands through its settings:[/] "
                           f"{escape('; '.join(enables))}.\nTrust it only if you trust its authors.")
        answer = (self.read_line("Trust this folder? [y]es / [n]o > ") or "").strip().lower()
        return answer in ("y", "yes")

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
            self.shown = ""
            result = self.agent.run(line)
            final = result.final_message.strip()
            if final and final not in self.shown:  # an answer no reply streamed (the repair path's): diff included
                head, _, diff = final.partition("\n\n")
                self.console.print(head, markup=False, highlight=False)
                if diff.startswith("--- a/"):
                    self._show_diff(diff)
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

                self.agent.client = make_client(rest, self.args.base_url, self.args.api_key,
                                                engine_opts={"speculative": self.args.speculative})
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


def run_tui(args) -> int:
    return Tui(args).loop()
