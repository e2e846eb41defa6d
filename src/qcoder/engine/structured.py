"""Structured decoding: what a request may generate, enforced token by token with grammar masks (llguidance).

A `Constraint` (in `SamplingParams.constraint`) says what the output must be: JSON (any object, or a value
matching a schema), a regex, one of a few strings, a grammar (Lark or GBNF), or one tool call in the model's own
format (optionally: or a plain answer, the agent's "final answer or exactly one call").

`StructuredDecoding` (one per engine) compiles constraints for the model's vocabulary and makes one matcher per
constrained request. Each step the engine asks it for the bitmasks of the rows that sample under a constraint; they
are filled in a worker thread while the model's forward runs (llguidance's native side releases the GIL), and the
sampler sets the logits of forbidden tokens to -inf (`apply_bitmask`). Rows without a constraint are never touched.
Each accepted token advances the request's matcher; when the grammar is complete the request stops.

llguidance was chosen over xgrammar by measurement (benchmarks/constrained_masks.py): comparable per-token mask
cost with the 151k Qwen vocabulary, much cheaper grammar compilation, no torch/triton dependency.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from qcoder.engine.tool_grammar import JSON_LAYOUT, lark_literal, tool_call_lark
from qcoder.errors import QcoderError

KINDS = ("json", "regex", "choice", "grammar", "tool_call")
TOOL_FORMATS = ("auto", "json", "xml")


@dataclass(frozen=True)
class Constraint:
    """What a request's output must match. Build one with the class methods; instances are hashable."""

    kind: str  # one of KINDS
    spec: str  # JSON schema text | regex | JSON list of choices | grammar text | JSON list of tools
    allow_text: bool = False  # tool_call: a plain answer without any call is allowed too
    tool_format: str = "auto"  # tool_call: "json" (Qwen2.5 Hermes), "xml" (Qwen3-Coder), "auto": the chat template's

    def __post_init__(self):
        if self.kind not in KINDS:
            raise QcoderError(f"unknown constraint kind {self.kind!r} (choose {', '.join(KINDS)})")
        if self.tool_format not in TOOL_FORMATS:
            raise QcoderError(f"unknown tool-call format {self.tool_format!r} (choose {', '.join(TOOL_FORMATS)})")

    @classmethod
    def json_schema(cls, schema: dict | None = None) -> Constraint:
        """A JSON value valid against `schema`; without one, any JSON object (OpenAI's json_object mode)."""
        return cls("json", json.dumps({"type": "object"} if schema is None else schema))

    @classmethod
    def regex(cls, pattern: str) -> Constraint:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: list[str]) -> Constraint:
        if not options or not all(isinstance(o, str) for o in options):
            raise QcoderError("a choice constraint needs a non-empty list of strings")
        return cls("choice", json.dumps(list(options)))

    @classmethod
    def grammar(cls, text: str) -> Constraint:
        """A grammar in llguidance's Lark dialect or in llama.cpp's GBNF."""
        return cls("grammar", text)

    @classmethod
    def tool_call(cls, tools: list, *, allow_text: bool = False, tool_format: str = "auto") -> Constraint:
        """Exactly one call of one of `tools` (OpenAI tool definitions) with schema-valid arguments."""
        plain = [t.model_dump(exclude_none=True) if hasattr(t, "model_dump") else t for t in tools]
        return cls("tool_call", json.dumps(plain), allow_text, tool_format)


class GrammarMatcher:
    """One request's position in its grammar."""

    def __init__(self, matcher):
        self._matcher = matcher

    def advance(self, token: int) -> bool:
        """Take the sampled token; False if the grammar does not allow it (the matcher then stays in error)."""
        return self._matcher.consume_token(token)

    @property
    def can_end(self) -> bool:
        """The text so far is a complete match (end-of-sequence may come now)."""
        return self._matcher.is_accepting()

    @property
    def finished(self) -> bool:
        """The grammar is complete: nothing but end-of-sequence may follow (also true after an error)."""
        return self._matcher.is_stopped()


class MaskJob:
    """The bitmasks of one step's constrained rows, being filled in the background."""

    def __init__(self, future: Future, rows: list[int], bitmask: torch.Tensor):
        self._future = future
        self.rows = rows  # the row of the step's sampling batch that each bitmask row belongs to
        self._bitmask = bitmask

    def result(self) -> dict[int, torch.Tensor]:
        """row -> its bitmask (int32 words, bit i of word w allows token 32 * w + i)."""
        self._future.result()
        return {row: self._bitmask[i] for i, row in enumerate(self.rows)}


class StructuredDecoding:
    """Per engine: compiles constraints for the model's vocabulary, makes matchers and fills their masks.

    Nothing is loaded until the first constraint arrives; then the vocabulary tables are built once (about a
    second) and kept for every engine with the same vocabulary.
    """

    def __init__(self, tokenizer, vocab_size: int):
        self._tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._lock = threading.Lock()
        self._ll_tokenizer = None
        self._executor = None  # llguidance's native thread pool for batched masks
        self._worker: ThreadPoolExecutor | None = None  # runs the batched fill beside the forward pass
        self._grammars: dict[Constraint, str] = {}

    # ----- compiling -----

    def check(self, constraint: Constraint) -> None:
        """Raise QcoderError naming the problem when the constraint cannot be compiled."""
        self.grammar(constraint)

    def grammar(self, constraint: Constraint) -> str:
        """The constraint as an llguidance grammar, validated against this vocabulary (cached)."""
        with self._lock:
            cached = self._grammars.get(constraint)
        if cached is not None:
            return cached
        llg = _llguidance()
        try:
            grammar = self._grammar_text(constraint)
        except ValueError as exc:
            raise QcoderError(f"invalid {_describe(constraint)}: {exc}") from exc
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, self.ll_tokenizer)
        if is_error:
            raise QcoderError(f"invalid {_describe(constraint)}: {_first_line(messages[0])}")
        with self._lock:
            if len(self._grammars) >= 256:
                self._grammars.clear()
            self._grammars[constraint] = grammar
        return grammar

    def _grammar_text(self, c: Constraint) -> str:
        llg = _llguidance()
        if c.kind == "json":
            return llg.LLMatcher.grammar_from_json_schema(c.spec, defaults=JSON_LAYOUT)
        if c.kind == "regex":
            return llg.LLMatcher.grammar_from_regex(c.spec)
        if c.kind == "choice":
            return llg.LLMatcher.grammar_from_lark("start: " + " | ".join(map(lark_literal, json.loads(c.spec))))
        if c.kind == "grammar":
            return llg.grammar_from("grammar", c.spec)  # Lark as it is; GBNF is converted to Lark
        lark = tool_call_lark(json.loads(c.spec), self._tool_format(c.tool_format), c.allow_text)
        return llg.LLMatcher.grammar_from_lark(lark)

    def _tool_format(self, fmt: str) -> str:
        if fmt != "auto":
            return fmt
        from qcoder.engine.chat_template import default_template
        from qcoder.engine.tool_parsers import FUNCTION_OPEN

        template = self._tokenizer.chat_template or default_template()
        return "xml" if FUNCTION_OPEN in template else "json"

    def matcher(self, constraint: Constraint) -> GrammarMatcher:
        llg = _llguidance()
        matcher = llg.LLMatcher(self.ll_tokenizer, self.grammar(constraint), log_level=0)
        if matcher.is_error():
            raise QcoderError(f"invalid {_describe(constraint)}: {_first_line(matcher.get_error())}")
        return GrammarMatcher(matcher)

    # ----- masks -----

    def start_masks(self, rows: list[tuple[int, GrammarMatcher]]) -> MaskJob | None:
        """Begin filling the bitmasks of `rows` ((row in the sampling batch, matcher)); None when there are none."""
        if not rows:
            return None
        bitmask = torch.full((len(rows), (self.vocab_size + 31) // 32), -1, dtype=torch.int32)
        matchers = [matcher._matcher for _, matcher in rows]
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcoder-masks")
        future = self._worker.submit(self._fill, matchers, bitmask)
        return MaskJob(future, [row for row, _ in rows], bitmask)

    def _fill(self, matchers: list, bitmask: torch.Tensor) -> None:
        from llguidance.torch import fill_next_token_bitmask_par

        fill_next_token_bitmask_par(self._executor, [(m, i) for i, m in enumerate(matchers)], bitmask)
        for i, m in enumerate(matchers):
            if m.is_error():  # cannot happen for tokens taken from the mask; end such a request cleanly
                bitmask[i] = 0
                for eos in self._ll_tokenizer.eos_tokens:
                    bitmask[i, eos // 32] |= 1 << (eos % 32)

    def warm_up_in_background(self) -> None:
        """Build the vocabulary tables and fill one JSON mask in a daemon thread: llguidance finishes some of its
        per-vocabulary work lazily, seconds of CPU that would otherwise delay the first constrained request."""

        def warm_up():
            matcher = self.matcher(Constraint.json_schema())
            self._fill([matcher._matcher], torch.full((1, (self.vocab_size + 31) // 32), -1, dtype=torch.int32))

        threading.Thread(target=warm_up, name="qcoder-structured-warm-up", daemon=True).start()

    # ----- the vocabulary -----

    @property
    def ll_tokenizer(self):
        with self._lock:
            if self._ll_tokenizer is None:
                self._ll_tokenizer = _vocabulary(self._tokenizer, self.vocab_size)
                self._executor = _llguidance().LLExecutor()
            return self._ll_tokenizer


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """`logits` with -inf wherever bit t of bitmask[i] is 0 (a new tensor; rows of logits and bitmask correspond)."""
    words = bitmask.cpu().numpy().view(np.uint8)  # little-endian int32 words: byte k holds tokens 8k..8k+7
    allowed = torch.from_numpy(np.unpackbits(words, axis=1, bitorder="little")[:, : logits.shape[1]])
    return torch.where(allowed.to(logits.device, torch.bool), logits, float("-inf"))


# ----- helpers -----

_VOCABULARIES: dict[bytes, object] = {}
_VOCABULARIES_LOCK = threading.Lock()


def _vocabulary(tokenizer, vocab_size: int):
    """llguidance's tokenizer for our vocabulary: the raw bytes of every id (ids past the tokenizer's table, the
    model's padding rows, stand for nothing and are never allowed). Control tokens (<|im_end|>, ...) are special:
    no text matches them; <tool_call> and <think> are text, as our decoder treats them."""
    llg = _llguidance()
    tokens = tokenizer.all_token_bytes(vocab_size)
    special = sorted(tokenizer.special_token_ids)
    eos = sorted(tokenizer.eos_token_ids)
    key = hashlib.sha256(b"\0".join(tokens) + json.dumps([vocab_size, special, eos]).encode()).digest()
    with _VOCABULARIES_LOCK:
        if key not in _VOCABULARIES:

            class Vocabulary:  # the duck type llguidance.TokenizerWrapper reads
                eos_token_id = eos[0]
                bos_token_id = None
                special_token_ids = special

                def __init__(self):
                    self.tokens = tokens

                def __call__(self, data: bytes) -> list[int]:
                    return tokenizer.encode(data.decode("utf-8", errors="replace"))

            wrapper = llg.TokenizerWrapper(Vocabulary())
            _VOCABULARIES[key] = llg.LLTokenizer(wrapper, n_vocab=vocab_size, eos_token=eos)
        return _VOCABULARIES[key]


def _llguidance():
    try:
        import llguidance
        import llguidance.torch  # noqa: F401  (the bitmask helpers)
    except ImportError as exc:  # a dependency of qcoder; only a broken install lacks it
        raise QcoderError("structured output needs the 'llguidance' package (pip install llguidance)") from exc
    return llguidance


def _describe(c: Constraint) -> str:
    return {
        "json": "JSON schema",
        "regex": "regex",
        "choice": "choice list",
        "grammar": "grammar",
        "tool_call": "tool-call constraint",
    }[c.kind]


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "rejected by the grammar compiler"
