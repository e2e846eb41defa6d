"""Undo: snapshots of the workspace in a shadow git store at `<workspace>/.qcoder/checkpoints.git`.

Git runs with GIT_DIR/GIT_WORK_TREE pointing at the shadow store, so the user's own .git is never
read or written. A snapshot is taken before the first change of each turn; `undo()` puts the files
back as they were in the latest snapshot (deleting files created since) and drops that snapshot.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qcoder.errors import QcoderError

REF = "refs/heads/checkpoints"


class Checkpoints:
    def __init__(self, workspace: Path):
        self.workspace = Path(workspace).resolve()
        self.git_dir = self.workspace / ".qcoder" / "checkpoints.git"
        self.taken_this_turn = False

    def _git(self, *args: str, check: bool = True) -> str:
        env = {**os.environ, "GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.workspace),
               "GIT_AUTHOR_NAME": "qcoder", "GIT_AUTHOR_EMAIL": "qcoder@localhost",
               "GIT_COMMITTER_NAME": "qcoder", "GIT_COMMITTER_EMAIL": "qcoder@localhost"}
        proc = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", *args],
                              cwd=self.workspace, env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise QcoderError(f"checkpoint store: git {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def _init(self) -> None:
        if (self.git_dir / "HEAD").exists():
            return
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q")
        # Our own state and the user's repository are never part of a snapshot.
        (self.git_dir / "info").mkdir(exist_ok=True)
        (self.git_dir / "info" / "exclude").write_text("/.qcoder/\n.git/\n")

    def new_turn(self) -> None:
        self.taken_this_turn = False

    def snapshot(self, label: str = "before turn") -> None:
        """Record the workspace once per turn, before its first change."""
        if self.taken_this_turn:
            return
        self._init()
        self._git("add", "-A", ".")
        tree = self._git("write-tree")
        parent = self._latest()
        commit = self._git("commit-tree", tree, "-m", label, *(["-p", parent] if parent else []))
        self._git("update-ref", REF, commit)
        self.taken_this_turn = True

    def _latest(self) -> str:
        """The latest snapshot's commit; "" when there is none."""
        return self._git("rev-parse", "--verify", "-q", REF, check=False) if (self.git_dir / "HEAD").exists() else ""

    def changes(self) -> str:
        """The diff from the latest snapshot to the workspace as it is: what `undo` would take back."""
        snap = self._latest()
        if not snap:
            return ""
        self._git("add", "-A", ".")
        return self._git("diff", "--cached", snap)

    def undo(self) -> list[str]:
        """Restore the latest snapshot; returns the paths that changed. Raises when there is none."""
        snap = self._latest()
        if not snap:
            raise QcoderError("nothing to undo")
        self._git("add", "-A", ".")
        changed = self._git("diff", "--cached", "--name-only", snap).splitlines()
        created = self._git("diff", "--cached", "--name-only", "--diff-filter=A", snap).splitlines()
        for rel in created:
            (self.workspace / rel).unlink(missing_ok=True)
        self._git("read-tree", snap)
        self._git("checkout-index", "-a", "-f")
        parent = self._git("rev-parse", "--verify", "-q", f"{snap}^", check=False)
        if parent:
            self._git("update-ref", REF, parent)
        else:
            self._git("update-ref", "-d", REF)
        self.taken_this_turn = False
        return changed
