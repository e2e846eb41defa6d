"""Trusted folders: a repository's own settings, MCP servers and project tools apply only where the user said so.

A cloned repository can carry `.qcoder/settings.toml` that switches on yolo mode, adds allow rules,
declares commands or starts MCP servers, all before the first prompt. Until the user trusts the folder,
qcoder ignores that file and starts no project tools or MCP servers at all (not even the user's own:
they would run this folder's code, `pytest` its conftest.py, without a question).

Answers live in the user's settings directory, in `trusted_folders.json` ({"/abs/path": true | false});
the nearest folder at or above the workspace that has an answer decides. The TUI asks once per folder and
stores the answer; headless runs never ask: `--trust`, QCODER_TRUST_WORKSPACE=1 or a stored yes trust the
folder, and otherwise what trust would enable is ignored with a one-line warning.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from qcoder.errors import QcoderError

ENV = "QCODER_TRUST_WORKSPACE"
FILE = "trusted_folders.json"
TRUSTED_ONLY = ("tools", "mcp_servers")  # settings that run commands: dropped in an untrusted folder


def env_trusts() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def stored(user_dir: Path, workspace: Path) -> bool | None:
    """The stored answer for `workspace` or its nearest decided parent; None when the user was never asked."""
    answers = _read(user_dir)
    for folder in (workspace, *workspace.parents):
        if str(folder) in answers:
            return bool(answers[str(folder)])
    return None


def remember(user_dir: Path, workspace: Path, trusted: bool) -> None:
    """Store the answer (atomically: a crash leaves the old file or the new one)."""
    answers = _read(user_dir)
    answers[str(workspace)] = trusted
    user_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=user_dir, prefix=f".{FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(answers, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, user_dir / FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(user_dir: Path) -> dict:
    path = user_dir / FILE
    if not path.is_file():
        return {}
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise QcoderError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(answers, dict):
        raise QcoderError(f"{path} must map folders to true or false")
    return answers


def what_trust_enables(workspace_settings: dict, user_settings: dict, workspace_file: Path) -> list[str]:
    """What would apply only in a trusted folder, in words (empty: nothing to decide)."""
    out = []
    if workspace_file.is_file():
        parts = [f"{k} = {workspace_settings[k]!r}" for k in ("approval_mode", "model") if k in workspace_settings]
        if (workspace_settings.get("permissions") or {}).get("allow"):
            parts.append("allow rules")
        parts += _commands(workspace_settings)
        out.append(f"{workspace_file.parent.name}/{workspace_file.name}" + (f" ({'; '.join(parts)})" if parts else ""))
    mine = _commands(user_settings)
    if mine:
        out.append(f"your own {'; '.join(mine)}")
    return out


def _commands(settings: dict) -> list[str]:
    parts = []
    if settings.get("tools"):
        parts.append("project tools " + ", ".join(sorted(settings["tools"])))
    if settings.get("mcp_servers"):
        parts.append("MCP servers " + ", ".join(sorted(settings["mcp_servers"])))
    return parts


def decide(workspace: Path, user_dir: Path, workspace_settings: dict, user_settings: dict, *, flag: bool,
           ask: Callable[[list[str]], bool] | None, warn: Callable[[str], None]) -> bool:
    """Is `workspace` trusted? --trust and the environment say yes for this run; else the stored answer;
    else the TUI asks (`ask`) and the answer is stored. Untrusted with something to ignore: one warning."""
    if flag or env_trusts():
        return True
    answer = stored(user_dir, workspace)
    enables = what_trust_enables(workspace_settings, user_settings, workspace / ".qcoder" / "settings.toml")
    if answer is None and enables and ask is not None:
        answer = bool(ask(enables))
        remember(user_dir, workspace, answer)
    if not answer and enables:
        warn(f"{workspace} is not a trusted folder, so qcoder ignores {'; '.join(enables)} "
             f"(trust it with --trust or {ENV}=1)")
    return bool(answer)
