"""Optional shell sandbox: bubblewrap, with no network and writes only inside the workspace.

Without bwrap on PATH we refuse instead of running unconfined while claiming a sandbox.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from qcoder.errors import QcoderError


def require_bwrap() -> str:
    path = shutil.which("bwrap")
    if not path:
        raise QcoderError("--sandbox needs bubblewrap (`bwrap`) on PATH (e.g. `apt-get install bubblewrap`); "
                          "install it or run without --sandbox")
    return path


def wrap(argv: list[str], workspace: Path) -> list[str]:
    """The command line that runs `argv` inside the sandbox: read-only system, writable workspace and /tmp."""
    ws = str(Path(workspace).resolve())
    return [require_bwrap(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", ws, ws, "--unshare-net", "--unshare-pid", "--die-with-parent", "--chdir", ws, "--", *argv]
