"""Model text -> an assistant message: the one path every caller takes (`LLM.chat`, the server, the agent's
in-process client), so the same text under the same template gives the same message everywhere.

Two parsers run in order: the reasoning split (`<think>...</think>` becomes `reasoning`), then, when tools were
offered, the tool-call parser on what remains. The parser comes from `LLMEngine.tool_parser`, resolved once from
the chat template the engine renders with (the checkpoint's own, else the bundled Qwen3-Coder one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qcoder.engine.reasoning import split_reasoning
from qcoder.engine.tool_parsers import ToolCall, ToolParser


@dataclass
class AssistantReply:
    content: str
    reasoning: str | None = None  # None: the text had no thinking section
    tool_calls: list[ToolCall] = field(default_factory=list)


def parse_assistant(
    text: str, tool_parser: ToolParser, tools: list | None, starts_in_thinking: bool = False
) -> AssistantReply:
    """Split reasoning off `text`, then (only when `tools` were offered) parse tool calls out of the rest."""
    reasoning, content = split_reasoning(text, starts_in_thinking=starts_in_thinking)
    if not tools:
        return AssistantReply(content, reasoning)
    parsed = tool_parser.parse(content, tools)
    return AssistantReply(parsed.content, reasoning, parsed.tool_calls)


def finish_reason(engine_reason: str | None, made_calls: bool) -> str:
    """The OpenAI finish_reason: a cut-off reply is "length" even after a call; else "tool_calls" or "stop"."""
    if engine_reason == "length":
        return "length"
    return "tool_calls" if made_calls else "stop"
