"""Search tools: glob and grep_search (ripgrep when on PATH, else Python; both honour .gitignore).

Both stay inside the workspace like the file tools: no symlink out of it is followed or listed.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess

from qcoder.agent.tools.base import Tool, ToolError
from qcoder.agent.tools.workspace import Workspace

MAX_RESULTS = 200


def glob(ws: Workspace, pattern: str, path: str = ".") -> str:
    base = ws.resolve(path)
    if not base.is_dir():
        raise ToolError(f"{path} is not a directory")
    # "**/x.py" should also match x.py at the top, as in most shells' globstar.
    patterns = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
    hits = [p for p in ws.files(base)
            if any(fnmatch.fnmatch(p.relative_to(base).as_posix(), pat) or fnmatch.fnmatch(p.name, pat)
                   for pat in patterns)]
    if not hits:
        return f"No files match {pattern!r} under {path}"
    shown = [ws.rel(p) for p in hits[:MAX_RESULTS]]
    more = f"\n... and {len(hits) - MAX_RESULTS} more" if len(hits) > MAX_RESULTS else ""
    return "\n".join(shown) + more


def grep_search(ws: Workspace, pattern: str, path: str = ".", include: str | None = None) -> str:
    base = ws.resolve(path)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from exc
    hits = _ripgrep(ws, pattern, base, include) if shutil.which("rg") else None
    if hits is None:
        hits = _python_grep(ws, regex, base, include)
    if not hits:
        return f"No matches for {pattern!r} under {path}"
    more = f"\n... and {len(hits) - MAX_RESULTS} more matches" if len(hits) > MAX_RESULTS else ""
    return "\n".join(hits[:MAX_RESULTS]) + more


def _ripgrep(ws: Workspace, pattern: str, base, include) -> list[str] | None:
    # --null ends each file name with NUL, so a name holding ':' cannot hide where the line came from;
    # --no-require-git: .gitignore counts outside a repository too, as in the Python search.
    cmd = ["rg", "-n", "--no-heading", "--color", "never", "--no-follow", "--no-require-git", "--null", "-e", pattern]
    if include:
        cmd += ["-g", include]
    proc = subprocess.run(cmd + ["--", ws.rel(base)], cwd=ws.root, capture_output=True, text=True,
                          errors="replace", timeout=60)
    if proc.returncode not in (0, 1):
        return None
    hits = []
    for line in proc.stdout.splitlines():
        name, sep, rest = line.partition("\0")
        if sep and ws.contains(ws.root / name):
            hits.append(f"{name.removeprefix('./')}:{rest}")
    return hits


def _python_grep(ws: Workspace, regex: re.Pattern, base, include) -> list[str]:
    files = [base] if base.is_file() else ws.files(base)
    hits = []
    for f in files:
        if include and not fnmatch.fnmatch(f.name, include):
            continue
        try:
            data = f.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if regex.search(line):
                hits.append(f"{ws.rel(f)}:{n}:{line[:300]}")
                if len(hits) > MAX_RESULTS:
                    return hits
    return hits


def search_tools(ws: Workspace) -> list[Tool]:
    path = {"type": "string", "description": "directory relative to the workspace (default: all)"}
    return [
        Tool("glob", "Find files whose path matches a glob pattern such as **/*.py.",
             {"type": "object", "properties": {"pattern": {"type": "string"}, "path": path}, "required": ["pattern"]},
             lambda **a: glob(ws, **a), kind="read"),
        Tool("grep_search", "Search file contents for a regular expression; shows file:line:text.",
             {"type": "object", "properties": {
                 "pattern": {"type": "string"}, "path": path,
                 "include": {"type": "string", "description": "only files matching this glob, e.g. *.py"}},
              "required": ["pattern"]},
             lambda **a: grep_search(ws, **a), kind="read"),
    ]
