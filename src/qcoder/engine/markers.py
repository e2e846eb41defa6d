"""The tags of Qwen's output format, and the one rule for streaming them.

While text arrives in pieces, an end that may be the start of a tag (`</thi`) is held back until the next piece
says whether it is one; `held_back_start` says where such an end begins.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
FUNCTION_OPEN, FUNCTION_CLOSE = "<function=", "</function>"
PARAMETER_OPEN, PARAMETER_CLOSE = "<parameter=", "</parameter>"


def held_back_start(text: str, tags: tuple[str, ...]) -> int:
    """Where a trailing fragment that could grow into one of `tags` starts (len(text) when there is none).

    Every tag starts with its only `<`, so the fragment starts at the last `<` close enough to the end."""
    start = text.rfind("<", max(0, len(text) - max(map(len, tags)) + 1))
    if start >= 0 and any(tag.startswith(text[start:]) for tag in tags):
        return start
    return len(text)
