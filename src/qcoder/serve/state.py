"""What the routes share: the engine, its limits, the tool-call parser, metrics, and how busy the server is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qcoder.serve.errors import APIError
from qcoder.serve.metrics import ServerMetrics

if TYPE_CHECKING:
    from qcoder.engine.async_engine import AsyncLLMEngine
    from qcoder.engine.engine import LLMEngine
    from qcoder.engine.tool_parsers import ToolParser


@dataclass
class ServerState:
    """What every route needs: the engine, its limits, parsers, metrics, and how busy the server is."""

    async_engine: AsyncLLMEngine  # runs the engine's steps: generate / abort / stats / shutdown
    engine: LLMEngine  # the engine inside it: tokenizer, chat template, sampling defaults (read-only use)
    model_name: str
    max_num_seqs: int
    max_waiting: int
    api_key: str | None = None
    stream_keepalive_s: float = 15.0  # an empty-delta chunk after this many silent seconds of a stream; 0: never
    tool_parser: ToolParser | None = None  # resolved once from the chat template (or --tool-call-parser)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    in_flight: int = 0  # engine sequences admitted and not yet finished or aborted
    draining: bool = False  # set on SIGINT/SIGTERM: finish what runs, accept nothing new

    @classmethod
    def for_engine(
        cls, async_engine: AsyncLLMEngine, engine: LLMEngine, *, tool_call_parser: str = "auto", **settings
    ) -> ServerState:
        parser = engine.tool_parser if tool_call_parser == "auto" else engine.resolve_tool_parser(tool_call_parser)
        return cls(async_engine=async_engine, engine=engine, tool_parser=parser, **settings)

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def template(self):
        return self.engine.chat_template

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def check_capacity(self, sequences: int, *, admitted: bool = False) -> None:
        """Refuse (503 draining, 429 full) unless `sequences` more fit in the running batch plus the waiting queue.

        `admitted`: the route accepted the request before draining began, so it still runs to its end."""
        if self.draining and not admitted:
            raise APIError(503, "the server is shutting down", code="server_shutting_down")
        if self.in_flight + sequences > self.max_num_seqs + self.max_waiting:
            raise APIError(
                429,
                f"the server is at capacity ({self.max_num_seqs} running, {self.max_waiting} waiting); retry later",
                code="rate_limit_exceeded",
            )
