"""What the model sees beyond the conversation: memory files, and compression of long histories.

Memory files (QCODER.md, AGENTS.md, QWEN.md) come from the user directory and the workspace, in that
order, and join the workspace context that opens the first task (the system prompt stays the same everywhere).
When the history nears the context limit, the turns between the task and the most recent ones are summarised by
the model and replaced by the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

from qcoder.agent import prompts
from qcoder.agent.settings import user_dir
from qcoder.agent.tools.workspace import Workspace

MEMORY_FILES = ("QCODER.md", "AGENTS.md", "QWEN.md")
MAX_MEMORY_CHARS = 8000


def memory_text(workspace: Path) -> str:
    parts = []
    for directory in (user_dir(), Path(workspace)):
        for name in MEMORY_FILES:
            path = directory / name
            if path.is_file():
                text = path.read_text(errors="replace").strip()[:MAX_MEMORY_CHARS]
                if text:
                    parts.append(prompts.MEMORY.format(name=path, text=text))
    return "".join(parts)


def file_overview(workspace: Path, limit: int = 60) -> str:
    """The workspace's files up front: a small model then starts from real names instead of guessing."""
    ws = Workspace(workspace)
    files = [ws.rel(p) for p in ws.files(ws.root)]
    more = f"\n... and {len(files) - limit} more" if len(files) > limit else ""
    return prompts.FILES.format(files="\n".join(files[:limit]) + more) if files else ""


def system_prompt(has_test: bool) -> str:
    return prompts.SYSTEM.format(verify=prompts.VERIFY_WITH_TEST if has_test else prompts.VERIFY_WITHOUT_TEST)


def workspace_context(workspace: Path) -> str:
    """The workspace's directory, files and memory notes: said once, before the first task."""
    return prompts.WORKSPACE.format(workspace=workspace) + file_overview(workspace) + memory_text(workspace)


def _message_text(message: dict) -> str:
    text = message.get("content") or ""
    for call in message.get("tool_calls") or []:
        text += f"\n[call {call['function']['name']} {call['function']['arguments']}]"
    return text


class Compressor:
    """Keeps the history under `threshold * limit` tokens by summarising its middle."""

    def __init__(self, client, limit: int = 32768, threshold: float = 0.75, keep_recent: int = 6):
        self.client = client
        self.limit = limit
        self.threshold = threshold
        self.keep_recent = keep_recent

    def tokens(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        text = "\n".join(f"{m['role']}: {_message_text(m)}" for m in messages)
        return self.client.count_tokens(text + (json.dumps(tools) if tools else ""))

    def needed(self, messages: list[dict], tools: list[dict] | None = None) -> bool:
        return self.tokens(messages, tools) > self.threshold * self.limit

    def compress(self, messages: list[dict]) -> list[dict] | None:
        """System prompt + task + summary + recent turns; None when there is nothing old enough to fold."""
        head = messages[:2]  # the system prompt and the task
        start = max(len(messages) - self.keep_recent, 2)
        # The kept tail must not begin with a tool result whose call was folded away.
        while start < len(messages) and messages[start]["role"] == "tool":
            start += 1
        middle, tail = messages[2:start], messages[start:]
        if not middle:
            return None
        transcript = "\n\n".join(f"{m['role']}: {_message_text(m)}"[:4000] for m in middle)
        reply = self.client.chat(
            [{"role": "system", "content": prompts.SUMMARIZE}, {"role": "user", "content": transcript}],
            max_tokens=1024, temperature=0.0)
        summary = {"role": "user", "content": prompts.SUMMARY.format(summary=reply.content.strip())}
        return [*head, summary, *tail]
