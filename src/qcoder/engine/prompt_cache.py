"""The prompt cache on disk: the K/V of a chat prompt's system turn, kept across processes.

Every agent run starts with the same system turn (its instructions and the tool schemas, about 1,000 tokens), and
each `qcoder -p` is a new process: on a 2-core CPU a 1.5B model prefills that turn in over a minute, each time.
The engine keeps the K/V of the turn's full cache blocks in a file named by the prefix cache's hash of its last
block (which covers every token before it), in a folder per model and engine settings. A new process loads the file
into free cache blocks and registers them as the prefix cache does computed ones, so the prompt's first step starts
after them. Only a system turn is kept: user turns change with every request (and may be private).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from qcoder.files import keep_newest, write_atomic

MIN_BLOCKS = 4  # a shorter system turn costs less to compute than to look up
KEEP = 8  # files in all the model folders (a 1.5B's agent system turn is 26 MB); the least recently used go first


def model_key(model_path: str | Path, *settings) -> str:
    """Names one model file (or folder) as it is now, with the settings that change its K/V (quantization, dtypes,
    the qcoder version): a changed model or engine never reads another's files."""
    path = Path(model_path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    identity = [str(path.resolve())] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return hashlib.sha256("|".join(identity + [str(s) for s in settings]).encode()).hexdigest()[:24]


def system_turn_end(token_ids: list[int], im_start: int | None, im_end: int | None, system: list[int]) -> int:
    """How many leading tokens make up the prompt's system turn (`<|im_start|>system ... <|im_end|>`), 0 when the
    prompt does not open with one."""
    if im_start is None or im_end is None or token_ids[: 1 + len(system)] != [im_start, *system]:
        return 0
    try:
        return token_ids.index(im_end) + 1
    except ValueError:
        return 0


class PromptCache:
    """Files of K/V under root/model_key/, one per kept prefix: [layers, 2, tokens, kv_heads, head_dim] in the
    cache's dtype. qcoder owns the root: the least recently used *.kv files in its subfolders are deleted."""

    def __init__(self, root: Path, model: str):
        self.root = Path(root)
        self.folder = self.root / model

    def _file(self, key: bytes) -> Path:
        return self.folder / f"{key.hex()}.kv"

    def has(self, key: bytes) -> bool:
        return self._file(key).is_file()

    def load(self, key: bytes, shape: tuple, dtype: torch.dtype) -> torch.Tensor | None:
        """The K/V kept under `key`, or None when the file is missing or not what this engine would have written
        (then it is dropped and written again later)."""
        file = self._file(key)
        try:
            kv = torch.load(file, weights_only=True)
            if isinstance(kv, torch.Tensor) and tuple(kv.shape) == tuple(shape) and kv.dtype == dtype:
                file.touch()  # recently used: pruned last
                return kv
        except Exception:  # noqa: BLE001 - a damaged file is a cache miss, never an error
            pass
        file.unlink(missing_ok=True)
        return None

    def save(self, key: bytes, kv: torch.Tensor) -> None:
        """Never an error: an unwritable cache only costs prefill time."""
        buffer = io.BytesIO()
        torch.save(kv.contiguous(), buffer)
        try:
            write_atomic(self._file(key), buffer.getvalue())
            keep_newest(self.root, "*/*.kv", KEEP)  # other models' and versions' files too
        except OSError:
            pass
