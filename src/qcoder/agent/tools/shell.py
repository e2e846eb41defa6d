"""run_shell_command: bash in the workspace with a timeout, a scrubbed environment and capped output.

Each command gets its own process group, so a timeout kills everything it started, not just bash.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qcoder.agent import sandbox
from qcoder.agent.tools.base import Tool

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|AUTH", re.IGNORECASE)
HEAD_CHARS = 4000
TAIL_CHARS = 6000


@dataclass
class ShellResult:
    exit_code: int | None  # None when killed on timeout
    output: str
    timed_out: bool = False
    timeout: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        head = (f"Timed out after {self.timeout:g}s; the command and its child processes were killed."
                if self.timed_out else f"Exit code: {self.exit_code}")
        return f"{head}\n{cap(self.output)}" if self.output else head


def cap(text: str) -> str:
    """Keep the head and the tail: errors are usually at the end, the command's context at the start."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    omitted = len(text) - HEAD_CHARS - TAIL_CHARS
    return f"{text[:HEAD_CHARS]}\n... ({omitted} characters omitted) ...\n{text[-TAIL_CHARS:]}"


def scrubbed_env(allow: list[str] = ()) -> dict[str, str]:
    """The environment minus anything that looks like a secret, unless the settings allow it by name.

    Unless a virtualenv is active, qcoder's own Python comes first on PATH, so `python -m pytest`
    finds the interpreter qcoder runs on rather than a bare system one.
    """
    env = {k: v for k, v in os.environ.items() if k in allow or not SECRET_NAME.search(k)}
    if not env.get("VIRTUAL_ENV"):
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
    return env


class Shell:
    def __init__(self, workspace: Path, timeout: float = 120.0, env_allow: list[str] = (), use_sandbox: bool = False):
        self.workspace = Path(workspace)
        self.timeout = timeout
        self.env_allow = list(env_allow)
        self.use_sandbox = use_sandbox
        if use_sandbox:
            sandbox.require_bwrap()

    def run(self, command: str, timeout: float | None = None) -> ShellResult:
        timeout = float(timeout or self.timeout)
        argv = ["bash", "-c", command]
        if self.use_sandbox:
            argv = sandbox.wrap(argv, self.workspace)
        proc = subprocess.Popen(argv, cwd=self.workspace, env=scrubbed_env(self.env_allow), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return ShellResult(proc.returncode, out.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return ShellResult(None, out.decode("utf-8", "replace"), timed_out=True, timeout=timeout)

    def tool(self) -> Tool:
        return Tool(
            "run_shell_command",
            "Run a bash command in the workspace and return its exit code and output.",
            {"type": "object", "properties": {
                "command": {"type": "string", "description": "the bash command, e.g. `python -m pytest -q`"},
                "timeout": {"type": "number", "description": f"seconds (default {self.timeout:g})"}},
             "required": ["command"]},
            lambda command, timeout=None: self.run(command, timeout).text(),
            kind="shell",
        )
