"""Sensitive paths: files that run code or steer tools later, so writing them is never routine.

`.qcoder/` holds settings that can switch on yolo mode or add commands, `.git/` holds hooks and a config
that git runs, and editors, CI and direnv run what their folders say. A model that writes one of them can
escape its approval mode (or the --sandbox) on the next run, so such writes always need a person's yes
(permissions.py), except in yolo mode.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SENSITIVE_DIRS = (".qcoder", ".git", ".github", ".vscode", ".idea", ".devcontainer", ".husky")
SENSITIVE_FILES = (".envrc", ".gitmodules", ".gitattributes", ".pre-commit-config.yaml", ".mcp.json")
_NAMES = "|".join(re.escape(n) for n in (*SENSITIVE_DIRS, *SENSITIVE_FILES))
# A sensitive name as a whole path component anywhere in a command line (".gitignore" is not ".git").
_IN_COMMAND = re.compile(rf"(?:^|[\s'\"=:/<>(;&|]){_NAMES}(?=$|[\s'\"/;&|)<>])")


def sensitive_path(workspace: Path, path: str) -> str | None:
    """The workspace-relative path when `path` (symlinks followed) is sensitive, else None."""
    try:
        target = (workspace / os.path.expanduser(path)).resolve()
        rel = target.relative_to(workspace.resolve())
    except (OSError, RuntimeError, ValueError):  # outside the workspace: the file tools refuse it anyway
        return None
    parts = rel.parts
    if any(part in SENSITIVE_DIRS for part in parts) or (parts and parts[-1] in SENSITIVE_FILES):
        return rel.as_posix()
    return None


def mentions_sensitive(command: str) -> bool:
    """Does a shell command name a sensitive path? (Then no allow rule or "always" answer covers it.)"""
    return bool(_IN_COMMAND.search(command))
