"""Settings: `~/.qcoder/settings.toml`, then `<workspace>/.qcoder/settings.toml`, then QCODER_* env.

Tables merge key by key (the workspace wins). The workspace file, and any settings that run commands
(project tools, MCP servers), apply only in a folder the user trusts (trust.py). QCODER_CONFIG moves the
user directory (tests use it).
Known environment overrides: QCODER_APPROVAL_MODE, QCODER_MAX_TEST_ROUNDS, QCODER_CONTEXT_LIMIT,
QCODER_SHELL_TIMEOUT.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from qcoder.agent.trust import TRUSTED_ONLY
from qcoder.errors import QcoderError

ENV_OVERRIDES = {
    "QCODER_APPROVAL_MODE": ("approval_mode", str),
    "QCODER_MAX_TEST_ROUNDS": ("max_test_rounds", int),
    "QCODER_CONTEXT_LIMIT": ("context_limit", int),
    "QCODER_SHELL_TIMEOUT": ("shell_timeout", float),
}


def user_dir() -> Path:
    """The user's settings and memory files: $QCODER_CONFIG, else $QCODER_HOME (its old name), else
    $XDG_CONFIG_HOME/qcoder when that folder exists, else ~/.qcoder (the documented place, so existing settings
    keep working). Models are cached elsewhere (QCODER_CACHE)."""
    for name in ("QCODER_CONFIG", "QCODER_HOME"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser() / "qcoder"
    return xdg if xdg.is_dir() else Path.home() / ".qcoder"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QcoderError(f"cannot parse {path}: {exc}") from exc


def user_settings() -> dict:
    return _read(user_dir() / "settings.toml")


def workspace_settings(workspace: Path) -> dict:
    return _read(Path(workspace) / ".qcoder" / "settings.toml")


def load_settings(workspace: Path, *, trusted: bool = False) -> dict:
    if trusted:
        settings = _merge(user_settings(), workspace_settings(workspace))
    else:
        settings = {k: v for k, v in user_settings().items() if k not in TRUSTED_ONLY}
    for env, (key, kind) in ENV_OVERRIDES.items():
        if os.environ.get(env):
            try:
                settings[key] = kind(os.environ[env])
            except ValueError as exc:
                raise QcoderError(f"{env}={os.environ[env]!r} is not a valid {kind.__name__}") from exc
    return settings
