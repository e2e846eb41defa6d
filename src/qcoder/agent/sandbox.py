"""Optional shell sandbox: bubblewrap, with no network and writes only inside the workspace.

Inside the workspace, `.qcoder/` (settings) and `.git/hooks`, `.git/config` stay read-only: a sandboxed
command must not plant what the next run of qcoder or git would execute outside the sandbox.

Without bwrap on PATH we refuse instead of running unconfined while claiming a sandbox.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from qcoder.errors import QcoderError

READ_ONLY_IN_WORKSPACE = (".qcoder", ".git/hooks", ".git/config")


def require_bwrap() -> str:
    path = shutil.which("bwrap")
    if not path:
        raise QcoderError("--sandbox needs bubblewrap (`bwrap`) on PATH (e.g. `apt-get install bubblewrap`); "
                          "install it or run without --sandbox")
    return path


def wrap(argv: list[str], workspace: Path) -> list[str]:
    """The command line that runs `argv` inside the sandbox: read-only system, writable workspace and /tmp."""
    root = Path(workspace).resolve()
    ws = str(root)
    (root / ".qcoder").mkdir(exist_ok=True)  # made here, so the sandbox cannot create it writable
    protect = []
    for rel in READ_ONLY_IN_WORKSPACE:
        if (root / rel).exists():
            protect += ["--ro-bind", str(root / rel), str(root / rel)]
    return [require_bwrap(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", ws, ws, *protect, "--unshare-net", "--unshare-pid", "--die-with-parent", "--chdir", ws,
            "--", *argv]
