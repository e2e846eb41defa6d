"""Settings: `~/.qcoder/settings.toml`, then `<workspace>/.qcoder/settings.toml`, then QCODER_* env.

Tables merge key by key (the workspace wins). The workspace file, and any settings that run commands
(project tools, MCP servers), apply only in a folder the user trusts (trust.py). QCODER_CONFIG moves the
user directory (tests use it).
Known environment overrides: QCODER_APPROVAL_MODE, QCODER_MAX_TEST_ROUNDS, QCODER_CONTEXT_LIMIT,
QCODER_SHELL_TIMEOUT.

What the merged tables mean, and every default, is the `Settings` model below; keys it does not know are
ignored (so older and newer files both load), values of the wrong type are one clear error.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from qcoder.agent.trust import TRUSTED_ONLY
from qcoder.errors import QcoderError

ENV_OVERRIDES = {
    "QCODER_APPROVAL_MODE": ("approval_mode", str),
    "QCODER_MAX_TEST_ROUNDS": ("max_test_rounds", int),
    "QCODER_CONTEXT_LIMIT": ("context_limit", int),
    "QCODER_SHELL_TIMEOUT": ("shell_timeout", float),
}


class _Table(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PermissionSettings(_Table):
    """`[permissions]`: rules that allow or deny tool calls without asking (see permissions.py)."""

    allow: list[str] = []
    deny: list[str] = []


class ShellSettings(_Table):
    """`[shell]`: the run_shell_command tool."""

    timeout: float = 120.0  # seconds per command
    allow_env: list[str] = []  # environment variables passed through to commands


class ProjectTool(_Table):
    """`[tools.NAME]`: a project command offered to the model as a tool; `command = ""` turns it off."""

    command: str | None = None
    timeout: float = 600.0
    description: str | None = None


class Settings(_Table):
    model: str | None = None
    approval_mode: str | None = None  # checked by Permissions; --approval-mode and -y win
    max_test_rounds: int = 3
    context_limit: int = 32768  # tokens of conversation before older turns are compressed
    shell_timeout: float | None = None  # wins over [shell] timeout (QCODER_SHELL_TIMEOUT sets it)
    permissions: PermissionSettings = PermissionSettings()
    shell: ShellSettings = ShellSettings()
    tools: dict[str, ProjectTool] = {}
    mcp_servers: dict[str, dict[str, Any]] = {}  # name -> server spec, read by mcp.py
    sampling: dict[str, Any] = {}  # request fields over the agent's defaults
    repair: dict[str, Any] = {}  # read by repair.RepairSettings

    @property
    def command_timeout(self) -> float:
        return self.shell_timeout if self.shell_timeout is not None else self.shell.timeout


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


def load_settings(workspace: Path, *, trusted: bool = False) -> Settings:
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
    try:
        return Settings.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise QcoderError(f"invalid settings: {where}: {first['msg']}") from exc
