"""Small git helpers shared by review and regress: run git, read a file at a revision, temporary worktrees."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from qcoder.errors import QcoderError


def git(repo: Path | str, *args: str, check: bool = True, timeout: float = 120) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, errors="replace",
                          timeout=timeout)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise QcoderError(f"git {' '.join(args)} failed: {detail[0] if detail else f'exit {proc.returncode}'}")
    return proc.stdout


def repo_root(path: Path | str = ".") -> Path:
    if shutil.which("git") is None:
        raise QcoderError("git is not installed")
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise QcoderError(f"{Path(path).resolve()} is not inside a git repository")
    return Path(proc.stdout.strip())


def resolve_rev(repo: Path, rev: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise QcoderError(f"unknown revision {rev!r}")
    return out.stdout.strip()


def show(repo: Path, rev: str, path: str) -> str | None:
    """The file at `rev` (`rev` "" = the index); None when it does not exist there."""
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True)
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None


@contextlib.contextmanager
def worktree(repo: Path, rev: str):
    """A clean, detached checkout of `rev` in a temporary directory, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="qcoder-wt-"))
    path = parent / "tree"
    git(repo, "worktree", "add", "--detach", "--quiet", str(path), rev)
    try:
        yield path
    finally:
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)
