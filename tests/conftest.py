"""What every test area shares: where the shared data lives (tokenizers, chat templates, datasets).

The data sits in `shared/data` beside the checkout (or beside a folder of worktrees); it is read in place.
"""

from __future__ import annotations

from pathlib import Path


def _shared_data() -> Path:
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return here.parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()
QWEN25_TOKENIZER = SHARED_DATA / "qwen2.5-coder-tokenizer"  # Qwen2.5-Coder: Hermes JSON tool calls
QWEN3_CODER = SHARED_DATA / "qwen3-coder-30b-a3b-instruct"  # Qwen3-Coder: XML tool calls, <think> tokens
