"""What a person reads while the agent works: one short line per step, for the TUI and headless text alike.

A step is the tool with its key argument and a short result (`● read_file textstats.py` / `  27 lines`); test
runs, repair candidates and edits made from a reply's code get a line each. A reply that is really a tool call
(raw JSON or XML from a small model) is not echoed: the step line says it once.
"""

from __future__ import annotations

import json
import re

KEY_ARGUMENT = {"read_file": "path", "write_file": "path", "edit": "path", "list_directory": "path",
                "run_shell_command": "command", "grep_search": "pattern", "glob": "pattern"}
CALL_MARKERS = ("<tool_call>", "<function=", "```json", '{"name"')


def short(text: str, limit: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def call_line(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return f"{name} {short(arguments, 80)}"
    if not isinstance(args, dict):
        return name
    key = KEY_ARGUMENT.get(name) or next((k for k, v in args.items() if isinstance(v, str)), None)
    return f"{name} {short(args[key], 80)}" if key in args else name


def result_line(name: str, content: str) -> str:
    lines = [line for line in content.splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    if content.startswith(("Error", "Permission denied", "Not run", "The user declined")):
        return short(lines[0], 160)
    if name in ("edit", "write_file"):
        added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        return f"{lines[0]} (+{added} -{removed})"
    if name == "read_file":
        total = re.search(r"\((\d+) lines in all", content)
        return f"{total.group(1) if total else len(lines)} lines"
    if lines[0].startswith(("Exit code", "Timed out")):  # shell and project commands: the verdict and the last word
        tail = next((line for line in reversed(lines[1:]) if not line.startswith("The tests fail. Next")), "")
        return short(f"{lines[0].lower()}: {tail.strip()}" if tail else lines[0].lower(), 160)
    return f"{len(lines)} lines" if len(lines) > 1 else short(lines[0], 160)


def test_line(data: dict) -> str:
    verdict = "pass" if data.get("passed") else "FAIL"
    summary = data.get("summary") or ("" if data.get("passed") else f"exit {data.get('exit_code')}")
    when = {"before": "tests before: ", "after": "tests after: ", "end": "tests at the end: "}.get(data.get("phase"), "tests: ")
    failing = [t.split("::")[-1] for t in data.get("failing") or []]
    more = f" ({', '.join(failing[:3])}{', ...' if len(failing) > 3 else ''})" if failing and not data.get("passed") else ""
    return f"{when}{verdict}{', ' + summary if summary else ''}{more}  [{data.get('command')}]"


def repair_line(data: dict) -> str:
    if data.get("phase") == "small_fixes":
        found = f": {data['fix']} passes" if data.get("fixed") else ", none passed"
        took = f" in {data['seconds']:.0f} s" if "seconds" in data else ""
        return f"repair: tried {data['tried']} one-token fixes{took}{found}"
    if data.get("phase") == "round":
        what = f"a correction of candidate {data['refine']}" if data.get("refine") else "rewrites"
        return (f"repair: {data['candidates']} {what} sampled in {data['sampling_s']:.0f} s, "
                f"tested in {data['testing_s']:.0f} s")
    if data.get("phase") == "start":
        return (f"repair: {len(data['tests'])} failing test(s) point at {', '.join(data['suspects'])}; "
                f"one-token fixes first, then {data['candidates']} rewrites")
    if data.get("fixed") and not data.get("chosen"):
        return f"repair: a one-token fix passes the tests ({', '.join(data['files'])})"
    if data.get("fixed"):
        return f"repair: candidate {data['chosen']} is the smallest passing fix ({', '.join(data['files'])})"
    return f"repair: none of {data.get('tried', 0)} candidates passed; the agent takes over"


def candidate_line(data: dict) -> str:
    change = f"+{data['added']} -{data['removed']} {', '.join(data['files'])}" if data["files"] else "no code"
    outcome = {"passed": "tests pass", "failed": data["reason"], "rejected": f"rejected: {data['reason']}",
               "duplicate": data["reason"], "untested": f"not run: {data['reason']}" if data["reason"] else "not run"}
    return short(f"candidate {data['index']}: {change} -> {outcome.get(data['status'], data['status'])}", 150)


def code_edit_line(data: dict) -> str:
    files = ", ".join(data["files"])
    return f"applied the reply's code to {files}" if data["applied"] else f"not applied to {files}: {data['reason']}"


class ProseFilter:
    """Passes a streamed reply through while it reads as prose; holds it once it looks like a tool call."""

    def __init__(self, write):
        self.write = write
        self.text = ""
        self.shown = ""
        self.holding = False

    def feed(self, delta: str) -> None:
        self.text += delta
        if self.holding:
            return
        head = self.text.lstrip()
        if not head:
            return
        if head[0] in "{<" or any(marker in self.text for marker in CALL_MARKERS):
            self.holding = True
            return
        new = self.text[len(self.shown):]
        self.shown += new
        self.write(new)

    def end(self, content: str) -> str:
        """The reply is complete: show its prose (what the tool-call parser left) if it was held back.
        Returns everything shown for this reply."""
        content = (content or "").strip()
        if self.holding and content and not self.shown.strip():
            self.write(content)
            self.shown = content
        if self.shown.strip():
            self.write("\n")
        shown, self.text, self.shown, self.holding = self.shown, "", "", False
        return shown


def describe(event: str, data: dict) -> str | None:
    """The one line an event shows, or None for events that show nothing by themselves."""
    if event == "tool_call":
        return f"● {call_line(data['name'], data['arguments'])}"
    if event == "tool_result":
        return f"  ⎿ {result_line(data['name'], data['content'])}"
    if event == "test_result":
        return f"● {test_line(data)}"
    if event == "repair":
        return f"● {repair_line(data)}"
    if event == "candidate":
        return f"  {candidate_line(data)}"
    if event == "code_edit":
        return f"● {code_edit_line(data)}"
    if event == "undone":
        return f"● undone: the edits to {', '.join(data['files'])} {data['why']}"
    if event == "compressed":
        return f"● history compressed: {data['before']} -> {data['after']} messages"
    return None
