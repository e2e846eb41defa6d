"""Sessions: one JSONL file per session under `<workspace>/.qcoder/sessions/`.

Records: {"type": "meta", ...} first, then {"type": "message", "message": {...}} per history entry,
and {"type": "replace", "messages": [...]} when compression rewrote the history. Appending keeps
each step durable; replaying the records rebuilds the history for --continue / --resume.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from qcoder.errors import QcoderError


def sessions_dir(workspace: Path) -> Path:
    return Path(workspace) / ".qcoder" / "sessions"


class Session:
    def __init__(self, path: Path, messages: list[dict] | None = None):
        self.path = path
        self.id = path.stem
        self.messages: list[dict] = messages or []

    @classmethod
    def new(cls, workspace: Path, **meta) -> Session:
        directory = sessions_dir(workspace)
        directory.mkdir(parents=True, exist_ok=True)
        # Our state stays out of the user's repository; .qcoder/settings.toml remains committable.
        ignore = directory.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("sessions/\ncheckpoints.git/\n")
        session_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        session = cls(directory / f"{session_id}.jsonl")
        session._append({"type": "meta", "created": time.time(), **meta})
        return session

    @classmethod
    def load(cls, workspace: Path, session_id: str) -> Session:
        path = sessions_dir(workspace) / f"{session_id}.jsonl"
        if not path.is_file():
            raise QcoderError(f"no session {session_id!r} in {sessions_dir(workspace)}")
        messages: list[dict] = []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if record["type"] == "message":
                messages.append(record["message"])
            elif record["type"] == "replace":
                messages = list(record["messages"])
        return cls(path, messages)

    @classmethod
    def latest(cls, workspace: Path) -> Session:
        files = sorted(sessions_dir(workspace).glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
        if not files:
            raise QcoderError(f"no session to continue in {sessions_dir(workspace)}")
        return cls.load(workspace, files[-1].stem)

    def add(self, message: dict) -> None:
        self.messages.append(message)
        self._append({"type": "message", "message": message})

    def replace(self, messages: list[dict]) -> None:
        self.messages = list(messages)
        self._append({"type": "replace", "messages": self.messages})

    def _append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
