"""Split a model's `<think>...</think>` reasoning from its answer, in one go or while streaming.

Rules (the same for both, because `split_reasoning` runs the stream):
- Output that starts (after whitespace) with `<think>` has reasoning up to `</think>`; the answer follows.
- With `starts_in_thinking=True` (the prompt already opened `<think>`, as Qwen3 thinking templates do), the output
  is reasoning from its first character.
- Reasoning that never closes (the output was cut off) is all reasoning, with no answer.
- Newlines around the reasoning and right after `</think>` are layout, not text, and are dropped.
"""

from __future__ import annotations

from qcoder.engine.markers import THINK_CLOSE, THINK_OPEN, held_back_start


def split_reasoning(text: str, starts_in_thinking: bool = False) -> tuple[str | None, str]:
    """(reasoning or None when there is no thinking section, content)."""
    stream = ReasoningStream(starts_in_thinking)
    reasoning, content = stream.feed(text)
    tail_reasoning, tail_content = stream.finish()
    return (reasoning + tail_reasoning if stream.has_reasoning else None), content + tail_content


class ReasoningStream:
    """Feed text deltas, get (reasoning_delta, content_delta) pairs; call finish() at the end for what was held."""

    def __init__(self, starts_in_thinking: bool = False):
        self._state = "thinking" if starts_in_thinking else "start"
        self.has_reasoning = starts_in_thinking
        self._buffer = ""  # text not yet classified: a possible tag fragment or held newlines
        self._reasoning_started = False  # leading newlines of the reasoning are dropped

    def feed(self, delta: str) -> tuple[str, str]:
        self._buffer += delta
        reasoning, content = [], []
        while True:
            progressed = getattr(self, f"_step_{self._state}")(reasoning, content)
            if not progressed:
                return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        rest, self._buffer = self._buffer, ""
        if self._state == "thinking":
            # Cut off while thinking: a held tag fragment is reasoning text; held trailing newlines are layout.
            rest = rest.rstrip("\n")
            return (rest if self._reasoning_started else rest.lstrip("\n")), ""
        if self._state == "after_close":
            return "", ""
        return "", rest

    # Each step consumes what it can from the buffer and says whether it changed anything.

    def _step_start(self, reasoning: list, content: list) -> bool:
        text = self._buffer.lstrip()
        if text.startswith(THINK_OPEN):
            self._buffer, self._state, self.has_reasoning = text[len(THINK_OPEN) :], "thinking", True
            return True
        if THINK_OPEN.startswith(text):  # only whitespace or part of the tag so far
            return False
        self._state = "content"
        return True

    def _step_thinking(self, reasoning: list, content: list) -> bool:
        end = self._buffer.find(THINK_CLOSE)
        if end >= 0:
            text, self._buffer, self._state = self._buffer[:end], self._buffer[end + len(THINK_CLOSE) :], "after_close"
            hold = 0
        else:
            text = self._buffer
            hold = len(text) - held_back_start(text, (THINK_CLOSE,))
            # Trailing newlines may turn out to be the layout before </think>.
            hold += len(text[: len(text) - hold]) - len(text[: len(text) - hold].rstrip("\n"))
            text, self._buffer = text[: len(text) - hold], text[len(text) - hold :]
        if self._state == "after_close":
            text = text.rstrip("\n")
        if not self._reasoning_started:
            text = text.lstrip("\n")
            self._reasoning_started = bool(text)
        if text:
            reasoning.append(text)
        return end >= 0

    def _step_after_close(self, reasoning: list, content: list) -> bool:
        text = self._buffer.lstrip("\n")
        if not text:
            self._buffer = ""
            return False
        self._buffer, self._state = text, "content"
        return True

    def _step_content(self, reasoning: list, content: list) -> bool:
        if self._buffer:
            content.append(self._buffer)
            self._buffer = ""
        return False
