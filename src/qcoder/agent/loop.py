"""The agent loop (mini-swe-agent style): the linear message history is the prompt.

Each step sends history + tool schemas to the model, runs the tool calls it makes and appends the
results. An answer without a tool call ends the run, after the project's tests pass (or fail N
rounds in a row). Exceptions carry the ways a run stops; the session is written after every message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from qcoder.agent import prompts
from qcoder.agent.tools.base import Tool, ToolError, format_result
from qcoder.client import ChatClient, ChatResponse
from qcoder.engine.tool_arguments import check_arguments
from qcoder.engine.tool_parsers import ToolCall, rescue_calls
from qcoder.errors import QcoderError


class Stop(Exception):
    status = "failure"


class Submitted(Stop):
    status = "success"


class LimitReached(Stop):
    status = "limit"


class Runaway(Exception):
    """The reply degenerated (e.g. counting digits forever); cut it off instead of waiting for max_tokens."""


class RunawayGuard:
    """Passes deltas on, and stops a reply that has started repeating itself: its last 200 characters use hardly
    any distinct characters, its last three lines are the same, or it ends in one block written three times (a
    loop inside a JSON string, where the lines are `\\n` escapes, runs to the token limit otherwise)."""

    def __init__(self, emit):
        self.emit = emit
        self.text = ""
        self.checked = 0

    def __call__(self, delta: str) -> None:
        self.text += delta
        self.emit("delta", text=delta)
        if len(self.text) > 400 and len(set(self.text[-200:])) <= 12:
            raise Runaway()
        lines = self.text.split("\n")[:-1]  # complete lines only
        if len(lines) >= 3 and len(lines[-1]) > 10 and lines[-1] == lines[-2] == lines[-3]:
            raise Runaway()
        if len(self.text) - self.checked >= 64:
            self.checked = len(self.text)
            if repeats_itself(self.text):
                raise Runaway()


def repeats_itself(text: str, times: int = 3, span: int = 200, probe: int = 24) -> bool:
    """Whether `text` ends in one block written `times` times in a row, the repeats `span` characters at least."""
    if len(text) < max(span, 2 * probe):
        return False
    tail, end = text[-probe:], len(text) - probe
    at = text.rfind(tail, 0, end - 1 + probe)  # earlier copies of the tail: each gives a period to check
    for _ in range(64):
        if at < 0:
            return False
        period = end - at
        count = max(times, -(-span // period))
        if period * count > len(text):
            return False
        if all(text[len(text) - (k + 1) * period:len(text) - k * period] == text[-period:] for k in range(1, count)):
            return True
        at = text.rfind(tail, 0, at - 1 + probe)
    return False


@dataclass
class Limits:
    max_turns: int = 40
    max_tokens: int | None = None  # prompt + completion tokens over the whole run
    timeout: float | None = None  # seconds, checked before each model call
    max_test_rounds: int = 3


@dataclass
class RunResult:
    status: str  # success | failure | limit | error
    reason: str
    final_message: str
    turns: int
    tool_calls: int
    files_changed: list[str]
    tokens: dict
    elapsed_s: float
    test_result: dict | None = None
    session_id: str = ""
    # How the model's calls fared: valid (ran past the argument checks), invalid (unknown tool, bad JSON, schema
    # violation, or call-like text that parsed as none), rescued (recovered from plain text by rescue_calls).
    call_checks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# What the loop needs of its collaborators (the real ones: permissions.py, session.py, tools/, checkpoints.py,
# context.py); tests and embedders may hand in anything with these methods.


class PermissionCheck(Protocol):
    def check(self, tool: Tool, args: dict) -> str | None: ...  # None: allowed; else why not, for the model


class History(Protocol):
    id: str
    messages: list[dict]

    def add(self, message: dict) -> None: ...

    def replace(self, messages: list[dict]) -> None: ...


class ChangedFiles(Protocol):
    changed: set[str]  # workspace-relative paths the tools wrote


class ShellResult(Protocol):
    ok: bool
    exit_code: int | None
    output: str

    def text(self) -> str: ...


class VerificationShell(Protocol):
    def run(self, command: str, timeout: float) -> ShellResult: ...


class Snapshots(Protocol):
    taken_this_turn: bool

    def new_turn(self) -> None: ...

    def snapshot(self) -> None: ...

    def changes(self) -> str: ...  # the diff since the latest snapshot

    def undo(self) -> list[str]: ...


class Repairer(Protocol):  # repair.py
    def attempt(self, agent: Agent, task: str) -> None: ...  # may raise Submitted

    def proposes_code(self, agent: Agent, content: str) -> bool: ...

    def harm(self, agent: Agent) -> str | None: ...  # why the run's edits are not worth keeping, by the tests

    def take_code_reply(self, agent: Agent, content: str) -> bool: ...


class HistoryCompressor(Protocol):
    def needed(self, messages: list[dict], schemas: list[dict]) -> bool: ...

    def compress(self, messages: list[dict]) -> list[dict] | None: ...


@dataclass
class Agent:
    client: ChatClient
    tools: dict[str, Tool]
    permissions: PermissionCheck
    session: History
    workspace: ChangedFiles
    shell: VerificationShell  # for the verification runs
    checkpoints: Snapshots | None = None
    compressor: HistoryCompressor | None = None
    test_command: str | None = None
    limits: Limits = field(default_factory=Limits)
    sampling: dict = field(default_factory=dict)
    emit: Callable[..., None] = lambda event, **data: None  # event sink: TUI, stream-json
    repair: Repairer | None = None  # test-verified rewrites first, and code in replies applied as edits
    context: str = ""  # the workspace, its files and notes: opens the session's first task (context.py)

    @property
    def messages(self) -> list[dict]:
        return self.session.messages

    def add(self, message: dict) -> None:
        self.session.add(message)

    def run(self, task: str) -> RunResult:
        self.turns = self.calls = self.test_rounds = 0
        self.call_checks = {"valid": 0, "invalid": 0, "rescued": 0}
        self.tokens = {"prompt_tokens": 0, "completion_tokens": 0}
        self.started, self.changed, self.test_result = time.monotonic(), False, None
        self.last_call, self.repeats = None, 0
        if self.checkpoints:
            self.checkpoints.new_turn()
        first = self.context and not any(m["role"] == "user" for m in self.messages)
        self.add({"role": "user", "content": prompts.TASK.format(context=self.context, task=task) if first else task})
        final = ""
        try:
            if self.repair:
                self.repair.attempt(self, task)  # submits a verified fix, or leaves notes for the loop
            while True:
                final = self.step() or final
        except Stop as stop:
            status, reason, final = stop.status, str(stop.args[0]), (stop.args[1] if len(stop.args) > 1 else final)
        except QcoderError as exc:  # the model endpoint failed for good
            status, reason = "error", str(exc)
        if status != "success":
            reason += self.undo_if_harmful()
        result = RunResult(status, reason, final, self.turns, self.calls, sorted(self.workspace.changed),
                           dict(self.tokens), round(time.monotonic() - self.started, 3), self.test_result,
                           self.session.id, dict(self.call_checks))
        self.emit("final", **result.to_dict())
        return result

    def undo_if_harmful(self) -> str:
        """A run that ends without success leaves no edits that broke a passing test or fixed no failing one: they
        are undone (the event carries their diff, to be applied by hand). Returns what to add to the stop reason."""
        if not (self.changed and self.repair and self.checkpoints and self.checkpoints.taken_this_turn):
            return ""
        diff = self.checkpoints.changes()  # empty after shell commands that changed nothing
        why = self.repair.harm(self) if diff else None
        if not why:
            return ""
        files = self.checkpoints.undo()
        self.workspace.changed.difference_update(files)
        self.emit("undone", files=files, why=why, diff=diff)
        return f"; its edits {why}, so they were undone"

    def step(self) -> str:
        self.check_limits()
        schemas = [t.schema() for t in self.tools.values()]
        if self.compressor and self.compressor.needed(self.messages, schemas):
            self.compress()
        self.turns += 1
        guard = RunawayGuard(self.emit)

        def on_delta(delta: str) -> None:  # "" is the client's heartbeat during a prefill
            if delta:
                guard(delta)
            self.check_time()  # inside a reply too: a slow model's reply begun just before the limit ran minutes past

        try:
            response = self.client.chat(self.messages, tools=schemas, on_delta=on_delta, **self.sampling)
        except Runaway:  # keep what came so far: its first line is often a good call
            response = ChatResponse(guard.text, finish_reason="runaway",
                                    usage={"completion_tokens": self.client.count_tokens(guard.text)})
        for key in self.tokens:
            self.tokens[key] += response.usage.get(key, 0)
        calls, content, code_then_test = response.tool_calls, response.content, False
        if not calls and content:  # small models often print the call as text: rescue it
            rescued = rescue_calls(content, schemas)
            calls, content = rescued.tool_calls, rescued.content
            self.call_checks["rescued"] += len(calls)
            # "here is the corrected code; now let's run the tests": the code is the edit, applied and tested below
            if calls and {c.name for c in calls} == {"test"} and self.repair and self.repair.proposes_code(
                    self, response.content):
                calls, content, code_then_test = [], response.content, True
        if not calls and response.finish_reason == "runaway":
            self.call_checks["invalid"] += self.unusable_call(content) is not None  # a call that never closed
            content = content[:300] + " ..."
        message = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        self.add(message)
        self.emit("assistant", content=content, reasoning=response.reasoning)
        if not calls and response.finish_reason == "runaway":
            self.add({"role": "user", "content": prompts.RUNAWAY})
            return ""
        if not calls:
            why = None if code_then_test else self.unusable_call(content)
            if why:
                self.call_checks["invalid"] += 1
                if self.count_repeat(("<unusable>", content.strip())) > 2:
                    raise Stop("the model repeated the same unusable tool call 3 times", content)
                self.add({"role": "user", "content": prompts.NOT_A_CALL.format(why=why, tools=", ".join(self.tools))})
                return content
            if self.repair and self.repair.take_code_reply(self, content):
                return content  # code for a workspace file: applied as an edit, not taken as the answer
            self.finish(content)
        for call in calls:
            self.execute(call)
        return content

    def unusable_call(self, content: str) -> str | None:
        """Why a reply that looks like a tool call (but parsed as none) cannot be run; None for a real answer."""
        if "<tool_call>" in content or "<function=" in content:
            return "it is truncated or malformed"
        names = re.findall(r'"name"\s*:\s*"([^"]*)"', content)
        if not names or '"arguments"' not in content:
            return None
        unknown = [n for n in names if n not in self.tools]
        if unknown:
            return f"there is no tool named {unknown[0]!r}"
        return 'it must be a single {"name": ..., "arguments": {...}} object with nothing else around it'

    def check_limits(self) -> None:
        if self.turns >= self.limits.max_turns:
            raise LimitReached(f"reached the turn limit ({self.limits.max_turns})")
        spent = sum(self.tokens.values())
        if self.limits.max_tokens and spent >= self.limits.max_tokens:
            raise LimitReached(f"reached the token limit ({spent} >= {self.limits.max_tokens})")
        self.check_time()

    def check_time(self) -> None:
        if self.limits.timeout and time.monotonic() - self.started >= self.limits.timeout:
            raise LimitReached(f"reached the time limit ({self.limits.timeout:g}s)")

    def compress(self) -> bool:
        folded = self.compressor.compress(self.messages) if self.compressor else None
        if folded is None:
            return False
        before = len(self.messages)
        self.session.replace(folded)
        self.emit("compressed", before=before, after=len(folded))
        return True

    def finish(self, answer: str) -> None:
        """The model says it is done: if it changed anything, verify with the project's tests, feeding failures back."""
        if not (self.test_command and self.changed):
            raise Submitted("answered", answer)
        result = self.shell.run(self.test_command, 900)
        self.test_result = {"command": self.test_command, "passed": result.ok, "exit_code": result.exit_code,
                            "output_tail": result.output[-2000:]}
        self.emit("test_result", **self.test_result)
        if result.ok:
            raise Submitted("answered; tests pass", answer)
        if self.test_rounds >= self.limits.max_test_rounds:
            raise Stop(f"tests still fail after {self.test_rounds} verification rounds", answer)
        self.test_rounds += 1
        self.add({"role": "user", "content": prompts.TEST_FAILED.format(command=self.test_command,
                                                                         output=result.text())})

    def execute(self, call: ToolCall) -> None:
        self.calls += 1
        self.emit("tool_call", id=call.id, name=call.name, arguments=call.arguments)
        if self.count_repeat((call.name, self._canonical(call))) > 2:
            output = "Not run: the same call was repeated again after a warning."
        else:
            output = self.run_tool(call)
            if self.repeats == 2:
                output += prompts.REPEATED_CALL.format(count=self.repeats)
        self.add({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": output})
        self.emit("tool_result", id=call.id, name=call.name, content=output)
        if self.repeats > 2:
            raise Stop(f"the model repeated the identical call {call.name} {call.arguments} {self.repeats} times")

    def count_repeat(self, signature: tuple) -> int:
        """How many times in a row the model has now made this same move."""
        self.repeats = self.repeats + 1 if signature == self.last_call else 1
        self.last_call = signature
        return self.repeats

    def _canonical(self, call: ToolCall) -> str:
        """The call's arguments as the tool sees them (unknown keys dropped), for spotting repeats."""
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            return call.arguments
        tool = self.tools.get(call.name)
        if isinstance(args, dict) and tool is not None:
            known = tool.parameters.get("properties", {})
            args = {k: v for k, v in args.items() if k in known}
        return json.dumps(args, sort_keys=True)

    def check_call(self, call: ToolCall) -> str | None:
        """What is wrong with the call itself (tool, JSON, schema), for the model to read; None when it can run."""
        tool = self.tools.get(call.name)
        if tool is None:
            return f"Error: unknown tool {call.name!r}. Available tools: {', '.join(self.tools)}."
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return f"Error: the arguments of {call.name} are not valid JSON ({exc}): {call.arguments[:200]}"
        if not isinstance(args, dict):
            return f"Error: the arguments of {call.name} must be a JSON object, got {type(args).__name__}"
        problem = check_arguments(tool.schema(), args)
        return f"Error: {problem}" if problem else None

    def run_tool(self, call: ToolCall) -> str:
        problem = self.check_call(call)
        self.call_checks["invalid" if problem else "valid"] += 1
        if problem:
            return problem
        tool, args = self.tools[call.name], json.loads(call.arguments or "{}")
        denied = self.permissions.check(tool, args)
        if denied:
            return denied
        if tool.kind != "read" and self.checkpoints:
            self.checkpoints.snapshot()
        # Edits and commands may change the code; running the project's own test/lint tools does not count.
        self.changed = self.changed or tool.kind in ("edit", "shell", "execute", "trusted")
        try:
            return format_result(tool.func(**args))
        except ToolError as exc:
            return f"Error: {exc}"
        except TypeError as exc:  # arguments the schema check let through
            return f"Error: bad arguments for {call.name}: {exc}"
        except Exception as exc:  # a plugin or MCP tool failed: the model reads why, the loop goes on
            return f"Error: {call.name} failed: {type(exc).__name__}: {exc}"
