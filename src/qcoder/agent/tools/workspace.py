"""The workspace: the one directory tree the file tools may touch.

Every path a model gives goes through `resolve`: relative to the root, symlinks followed, and rejected
when the real target lies outside. Writes are atomic and reported (for checkpoints and the summary).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import tempfile
from pathlib import Path

from qcoder.agent.tools.base import ToolError

# Never listed or searched: version control, our own state, caches.
SKIP_DIRS = {".git", ".qcoder", "__pycache__", "node_modules", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.changed: set[str] = set()

    def resolve(self, path: str) -> Path:
        if not isinstance(path, str) or not path.strip():
            raise ToolError("path must be a non-empty string")
        raw = Path(path.strip()).expanduser()
        target = (raw if raw.is_absolute() else self.root / raw).resolve()
        if not self.contains(target):
            raise ToolError(f"path {path!r} is outside the workspace {self.root}; only files inside it are allowed")
        return target

    def contains(self, path: Path) -> bool:
        """Does `path` really lie inside the workspace, once every symlink on the way is followed?"""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        return real == self.root or real.is_relative_to(self.root)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def write(self, target: Path, text: str) -> None:
        """Atomic write: a temporary file beside the target, then rename over it (keeping its mode)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = target.stat().st_mode & 0o7777 if target.exists() else None
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.changed.add(self.rel(target))

    def files(self, under: Path) -> list[Path]:
        """Files below `under`, honouring .gitignore (through git when this is a repository).

        A symlink whose target lies outside the workspace is left out: search tools run unapproved, even
        in plan mode, so they must not read through a link what read_file would refuse.
        """
        listed = self._git_files(under)
        if listed is None:
            listed = self._walk(under)
        return [p for p in listed if self.contains(p)]

    def _walk(self, under: Path) -> list[Path]:
        ignore = self._ignore_patterns()
        out = []
        for dirpath, dirnames, filenames in os.walk(under):
            base = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not self._ignored(base / d, ignore))
            out.extend(base / f for f in sorted(filenames) if not self._ignored(base / f, ignore))
        return out

    def _git_files(self, under: Path) -> list[Path] | None:
        try:
            proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", "."], cwd=under,
                                  capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            return None
        paths = [under / p for p in proc.stdout.decode("utf-8", "replace").split("\0") if p]
        if not paths and self._ignored_by_enclosing_repo():
            return None  # a workspace in an ignored folder of a bigger repository (`make run`'s runs/): walk it
        return sorted(p for p in paths if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(self.root).parts))

    def _ignored_by_enclosing_repo(self) -> bool:
        try:
            return subprocess.run(["git", "check-ignore", "-q", "."], cwd=self.root, capture_output=True,
                                  timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _ignore_patterns(self) -> list[str]:
        gitignore = self.root / ".gitignore"
        if not gitignore.is_file():
            return []
        lines = (line.strip() for line in gitignore.read_text(errors="replace").splitlines())
        return [line.rstrip("/") for line in lines if line and not line.startswith(("#", "!"))]

    def _ignored(self, path: Path, patterns: list[str]) -> bool:
        rel = self.rel(path)
        return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(rel, p.lstrip("/")) for p in patterns)
