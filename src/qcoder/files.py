"""Atomic file writes (reports, generated tests, caches): a temporary file beside the target, then a rename, so a
reader never sees half a file. And the pruning of a cache folder to its newest entries."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(target: Path, data: str | bytes) -> None:
    """Text is written as UTF-8, bytes as they are."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def keep_newest(folder: Path, pattern: str, keep: int, companions: Callable[[Path], list[Path]] = lambda _: []) -> None:
    """Delete all but the `keep` most recently written files of `folder` that match `pattern`, each with its
    companions (files that belong to that entry)."""
    entries = sorted(folder.glob(pattern), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        for file in [*companions(old), old]:
            file.unlink(missing_ok=True)
