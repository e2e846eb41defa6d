"""LLMEngine: the step loop (schedule -> one batched forward -> sample -> append/detokenize/stop). Its offline
wrapper, `qcoder.LLM`, is in llm.py.

    engine = LLMEngine("qwen2.5-coder-0.5b-instruct")
    engine.add_request("r1", engine.tokenizer.encode("def fib(n):"), SamplingParams(max_tokens=32))
    while engine.has_unfinished():
        for out in engine.step():
            print(out.text_delta, end="")

One step computes, for every scheduled sequence, the tokens the scheduler chose (a decode token or a
prefill chunk) in a single ForwardBatch (see qcoder/model/qwen.py for that contract), and samples one
token for every sequence whose chunk reached its end.

Stop rules, in order: eos / stop_token_ids (the token is counted but adds no text), stop strings (the
text from the stop string on is dropped; while streaming, the last len(longest stop) - 1 characters are
held back so a stop string is never half-emitted), max_tokens and the context window ("length").
Thinking budget: inside <think> (opened by the prompt's generation prompt or by the model), after
`thinking_budget` tokens the engine feeds the tokens of "\\n</think>\\n\\n" one per step instead of sampling.
Structured output (params.constraint, see structured.py): outside <think>, sampled tokens are masked to the
request's grammar, the masks computed while the forward runs; the request stops ("stop") when the grammar is complete.
Speculative decoding (speculative="ngram", see speculative.py): a decode also feeds tokens drafted from the
sequence's own text, and one step may emit several tokens for it; the stop rules are applied token by token, so
nothing past a stop or max_tokens is ever emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from qcoder.engine.kv_cache import BlockManager, default_kv_cache_memory, kv_cache_capacity
from qcoder.engine.markers import THINK_CLOSE, THINK_OPEN
from qcoder.engine.prompt_cache import MIN_BLOCKS, PromptCache, model_key, system_turn_end
from qcoder.engine.sampling import Logprobs, Sampler, SampleRow, SamplingParams, SeenTokens
from qcoder.engine.scheduler import ScheduledSeq, Scheduler, Sequence
from qcoder.engine.speculative import DEFAULT_DRAFT_TOKENS, DEFAULT_MODE, NgramDrafter, check_mode, verify_drafts
from qcoder.engine.structured import GrammarMatcher, StructuredDecoding
from qcoder.engine.tokenizer import IncrementalDecoder, Tokenizer
from qcoder.errors import QcoderError
from qcoder.threads import release_freed_memory

# Qwen's recommended sampling settings, used when a checkpoint ships no generation_config.json (GGUF files).
QWEN_SAMPLING_DEFAULTS = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
THINK_CLOSE_TEXT = f"\n{THINK_CLOSE}\n\n"


@dataclass
class RequestOutput:
    request_id: str
    new_token_ids: list[int]
    text_delta: str
    finished: bool
    finish_reason: str | None  # "stop" | "length" | None
    logprobs: list[Logprobs] | None  # one (logprob, top [(id, logprob)]) per new token when asked for
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache


@dataclass(eq=False)
class _Request:
    """Engine-side state of one request beside its scheduler Sequence."""

    seq: Sequence
    decoder: IncrementalDecoder
    generator: torch.Generator | None
    max_stop_len: int
    thinking: bool
    text: str = ""
    emitted: int = 0  # characters of `text` already returned
    thinking_tokens: int = 0
    forced: list[int] = field(default_factory=list)  # tokens to feed instead of sampling (thinking budget)
    seen: SeenTokens = field(default_factory=SeenTokens)  # distinct tokens so far (repetition penalty)
    matcher: GrammarMatcher | None = None  # structured output: where the output is in its grammar
    drafter: NgramDrafter | None = None  # speculative decoding
    keep: tuple[int, bytes] | None = None  # (blocks, key): its system turn goes to the prompt cache once computed


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device_dtype(device: str | None, dtype) -> tuple[str, torch.dtype]:
    """The one rule for every command: the device defaults to cuda when available, else cpu; dtype "auto" is
    bfloat16 on a GPU and float32 on the CPU."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(dtype, torch.dtype):
        return device, dtype
    if dtype == "auto":
        return device, torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise QcoderError(f"unknown dtype {dtype!r} (choose auto, float32, bfloat16 or float16)")
    return device, DTYPES[dtype]


class LLMEngine:
    def __init__(
        self,
        model,
        *,
        dtype="auto",
        device: str | None = None,
        quant: str = "auto",
        threads: int | None = None,
        **opts,
    ):
        """Load `model` (a local path, a registry short name or an HF repo id) and set up the engine.

        quant: weight quantization, "auto" (on the CPU a GGUF computes from its quantized blocks, see
        qcoder.model.gguf_linear), "none", "int8" or "int4" (see qcoder.model.quant).
        threads: CPU threads for the kernels (default: torch's, the number of physical cores).
        opts: max_model_len, max_num_seqs (16), max_num_batched_tokens (512), block_size (16),
        kv_cache_tokens (default: what kv_cache_memory holds), kv_cache_memory (bytes; default 1 GiB on CPU,
        80% of the free memory on a GPU),
        enable_prefix_caching (True), speculative ("none" or "ngram": speculative.py), draft_tokens (the most
        tokens drafted per step, default 6), prompt_cache (a folder: the K/V of system turns kept on disk for the
        next process, see prompt_cache.py; a subfolder per model and settings; default None, off; from_parts takes
        a PromptCache).
        """
        from qcoder.model.loader import load_model
        from qcoder.model.registry import resolve_model

        if threads is not None:
            if threads < 1:
                raise QcoderError(f"threads must be at least 1 (got {threads})")
            torch.set_num_threads(threads)
        path = resolve_model(str(model))
        device, dtype = resolve_device_dtype(device, dtype)
        module, config = load_model(path, dtype=dtype, device=device, quant=quant)
        if opts.get("prompt_cache") is not None:
            from qcoder import __version__

            opts["prompt_cache"] = PromptCache(opts["prompt_cache"], model_key(path, quant, dtype, device, __version__))
        self._setup(module, config, Tokenizer.from_path(path), **opts)

    @classmethod
    def from_parts(cls, model, config, tokenizer, **opts) -> LLMEngine:
        """An engine around an already-built model (anything with the QwenForCausalLM forward contract)."""
        engine = cls.__new__(cls)
        engine._setup(model, config, tokenizer, **opts)
        return engine

    def _setup(
        self,
        model,
        config,
        tokenizer: Tokenizer,
        *,
        max_model_len: int | None = None,
        max_num_seqs: int = 16,
        max_num_batched_tokens: int = 512,
        block_size: int = 16,
        kv_cache_tokens: int | None = None,
        kv_cache_memory: int | None = None,
        enable_prefix_caching: bool = True,
        speculative: str = DEFAULT_MODE,
        draft_tokens: int = DEFAULT_DRAFT_TOKENS,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        from qcoder.model.qwen import allocate_kv_cache

        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        param = next(model.parameters(), None)
        self.dtype = param.dtype if param is not None else torch.float32
        self.device = param.device if param is not None else torch.device("cpu")
        self.kv_dtype = getattr(model, "kv_cache_dtype", None) or self.dtype

        model_len = max_model_len or config.max_position_embeddings
        if kv_cache_tokens is None:
            memory = kv_cache_memory if kv_cache_memory is not None else default_kv_cache_memory(self.device)
            kv_cache_tokens = kv_cache_capacity(config, self.kv_dtype.itemsize, memory, max_num_seqs * model_len)
        num_blocks = kv_cache_tokens // block_size
        if num_blocks < 1:
            raise QcoderError(f"the KV cache must hold at least one block of {block_size} tokens")
        capacity = num_blocks * block_size
        if max_model_len is not None and max_model_len > capacity:
            raise QcoderError(f"max_model_len {max_model_len} does not fit the KV cache ({capacity} tokens)")
        self.max_model_len = min(model_len, capacity)

        self.block_manager = BlockManager(num_blocks, block_size, enable_prefix_caching)
        self.speculative = check_mode(speculative)
        self.draft_tokens = draft_tokens
        NgramDrafter(draft_tokens)  # an invalid draft_tokens fails here, not at the first request
        drafter = self._draft if speculative != "none" else None
        self.scheduler = Scheduler(self.block_manager, max_num_seqs, max_num_batched_tokens, drafter)
        self.kv_caches = allocate_kv_cache(config, capacity, self.kv_dtype, self.device)
        self.sampler = Sampler()
        self.structured = StructuredDecoding(tokenizer, config.vocab_size)
        self.requests: dict[str, _Request] = {}
        self.eos_token_ids = set(tokenizer.eos_token_ids)
        self.think_start = tokenizer.token_to_id(THINK_OPEN)
        self.think_end = tokenizer.token_to_id(THINK_CLOSE)
        self.prompt_cache = prompt_cache
        self._system_turn = (tokenizer.token_to_id("<|im_start|>"), tokenizer.token_to_id("<|im_end|>"),
                             tokenizer.encode("system"))
        self.counters = {
            "prompt_tokens_computed": 0,
            "generation_tokens": 0,
            "requests_finished": 0,
            "steps": 0,
            "draft_tokens": 0,  # drafted tokens verified (speculative decoding)
            "draft_tokens_accepted": 0,
            "prompt_tokens_loaded": 0,  # from the prompt cache on disk
        }
        release_freed_memory()  # what loading the model and the tokenizer freed: 80 MiB of the 0.5B's peak RSS

    @cached_property
    def chat_template(self):
        from qcoder.engine.chat_template import ChatTemplate

        return ChatTemplate.for_tokenizer(self.tokenizer)

    @cached_property
    def tool_parser(self):
        """The "auto" tool-call parser, picked once from the template this engine renders with."""
        return self.resolve_tool_parser("auto")

    def resolve_tool_parser(self, name: str):
        """A tool-call parser by name ("auto" reads the chat template this engine renders with)."""
        from qcoder.engine.tool_parsers import get_tool_parser

        return get_tool_parser(name, self.chat_template.source)

    def default_params(self, **overrides) -> SamplingParams:
        """The checkpoint's generation_config (or Qwen's recommended settings) with overrides applied."""
        cfg = self.tokenizer.generation_config or QWEN_SAMPLING_DEFAULTS
        return SamplingParams.from_generation_config(cfg, **overrides)

    # ----- requests -----

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams | None = None) -> None:
        params = params or self.default_params()
        prompt = list(prompt_token_ids)
        self.check_prompt(prompt)
        if request_id in self.requests:
            raise QcoderError(f"request id {request_id!r} is already running")
        room = self.max_model_len - len(prompt)
        seq = Sequence(request_id, prompt, len(prompt), params, min(params.max_tokens or room, room))
        matcher = self.structured.matcher(params.constraint) if params.constraint is not None else None
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        self.requests[request_id] = _Request(
            seq=seq,
            decoder=IncrementalDecoder(self.tokenizer, skip_special_tokens=params.skip_special_tokens),
            generator=generator,
            max_stop_len=max((len(s) for s in params.stop), default=0),
            thinking=self.opens_thinking(prompt),
            matcher=matcher,
            drafter=NgramDrafter(self.draft_tokens) if self.speculative == "ngram" else None,
            keep=self._restore_system_turn(prompt),
        )
        self.scheduler.add(seq)

    def _restore_system_turn(self, prompt: list[int]) -> tuple[int, bytes] | None:
        """Fill the prefix cache with the prompt's system turn from the prompt cache on disk, where it is kept there
        and not in memory already; (blocks, key) when it is not kept yet, to be saved once computed."""
        manager = self.block_manager
        if self.prompt_cache is None or not manager.enable_prefix_caching:
            return None
        blocks = min(system_turn_end(prompt, *self._system_turn), len(prompt) - 1) // manager.block_size
        if blocks < MIN_BLOCKS:
            return None
        hashes = manager.chain_hashes(prompt, blocks)
        if any(req.keep and req.keep[1] == hashes[-1] for req in self.requests.values()):
            return None  # another request saves it
        if not self.prompt_cache.has(hashes[-1]):
            return blocks, hashes[-1]
        if not manager.missing(hashes):
            return None
        size = manager.block_size
        layer = self.kv_caches[0]
        kv = self.prompt_cache.load(hashes[-1], (len(self.kv_caches), 2, blocks * size, *layer.shape[2:]), layer.dtype)
        if kv is None:
            return blocks, hashes[-1]
        for j, block in (manager.adopt(hashes) or {}).items():
            for cache, saved in zip(self.kv_caches, kv, strict=True):
                cache[:, block * size : (block + 1) * size] = saved[:, j * size : (j + 1) * size]
            self.counters["prompt_tokens_loaded"] += size
        return None

    def _keep_system_turn(self, req: _Request) -> None:
        blocks, key = req.keep
        req.keep = None
        size = self.block_manager.block_size
        kv = torch.stack([torch.cat([cache[:, b * size : (b + 1) * size] for b in req.seq.block_table[:blocks]], dim=1)
                          for cache in self.kv_caches])
        self.prompt_cache.save(key, kv.cpu())

    def check_prompt(self, prompt_token_ids: list[int]) -> None:
        """Raise QcoderError for a prompt this engine cannot run (thread-safe: reads only fixed settings)."""
        if not prompt_token_ids:
            raise QcoderError("the prompt is empty")
        if len(prompt_token_ids) >= self.max_model_len:
            raise QcoderError(
                f"the prompt has {len(prompt_token_ids)} tokens; the context window is {self.max_model_len} tokens "
                "and must leave room for at least one generated token"
            )
        if min(prompt_token_ids) < 0 or max(prompt_token_ids) >= self.config.vocab_size:
            raise QcoderError(
                f"the prompt has token ids outside the model's vocabulary (0..{self.config.vocab_size - 1})"
            )

    def opens_thinking(self, token_ids: list[int]) -> bool:
        """True when the last <think> in token_ids is not closed (the generation prompt opened thinking)."""
        if self.think_start is None:
            return False
        for token in reversed(token_ids):
            if token == self.think_end:
                return False
            if token == self.think_start:
                return True
        return False

    def abort(self, request_id: str) -> bool:
        """Drop a request now (waiting or running); its cache blocks are freed at once."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return False
        self.scheduler.finish(req.seq)
        return True

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def stats(self) -> dict:
        return {
            "running": len(self.scheduler.running),
            "waiting": len(self.scheduler.waiting),
            "kv_usage": self.block_manager.usage(),
            "kv_cache_tokens": self.block_manager.num_blocks * self.block_manager.block_size,
            "prompt_tokens_cached": self.scheduler.prompt_tokens_cached,
            "preemptions": self.scheduler.num_preemptions,
            **self.counters,
        }

    # ----- the step -----

    def step(self) -> list[RequestOutput]:
        plan = self.scheduler.schedule()
        if not plan:
            return []
        batch = self._build_batch(plan)
        sampling = [item for item in plan if item.samples]
        reqs = [self.requests[item.seq.request_id] for item in sampling]
        rows = [self._sample_row(req) for req in reqs]
        masks = self.structured.start_masks(  # filled in a worker thread while the model runs
            [(i, req.matcher) for i, req in enumerate(reqs) if self._constrained(req, rows[i])]
        )
        with torch.inference_mode():
            logits = self.model(batch, self.kv_caches)
        if masks is not None:
            for i, mask in masks.result().items():
                rows[i].token_mask = mask
        tokens, logprobs = self._choose_tokens(logits, sampling, rows)

        for item in plan:
            start = item.seq.num_computed_tokens
            self.counters["prompt_tokens_computed"] += max(
                0, min(start + item.num_new_tokens, item.seq.num_prompt_tokens) - start
            )
        self.scheduler.update(plan)
        for item in plan:
            req = self.requests[item.seq.request_id]
            if req.keep and item.seq.num_computed_tokens >= req.keep[0] * self.block_manager.block_size:
                self._keep_system_turn(req)
        self.counters["steps"] += 1
        return [
            self._append(req, toks, lps, row.token_mask is not None)
            for req, row, toks, lps in zip(reqs, rows, tokens, logprobs, strict=True)
        ]

    def _choose_tokens(
        self, logits: torch.Tensor, sampling: list[ScheduledSeq], rows: list[SampleRow]
    ) -> tuple[list[list[int]], list[list[Logprobs | None]]]:
        """The tokens each sampling sequence emits this step: one sampled token, or (with a draft) the accepted
        drafted tokens and one more. `logits` has one row per sampling sequence plus one per drafted token."""
        starts = [0]
        for item in sampling:
            starts.append(starts[-1] + 1 + len(item.draft))
        plain = [i for i, item in enumerate(sampling) if not item.draft]
        tokens: list[list[int]] = [[] for _ in sampling]
        logprobs: list[list[Logprobs | None]] = [[] for _ in sampling]
        if plain:  # one batched sampler call for every sequence without a draft
            sampled, sampled_lps = self.sampler(logits[[starts[i] for i in plain]], [rows[i] for i in plain])
            for i, token, lp in zip(plain, sampled, sampled_lps, strict=True):
                tokens[i], logprobs[i] = [token], [lp]
        drafted = [i for i, item in enumerate(sampling) if item.draft]
        if drafted:  # one verification for every sequence with a draft
            block = logits[[j for i in drafted for j in range(starts[i], starts[i + 1])]]
            drafts = [sampling[i].draft for i in drafted]
            verified = verify_drafts(self.sampler, block, [rows[i] for i in drafted], drafts)
            for i, draft, (toks, lps) in zip(drafted, drafts, verified, strict=True):
                tokens[i], logprobs[i] = toks, lps
                self.counters["draft_tokens"] += len(draft)
                self.counters["draft_tokens_accepted"] += len(toks) - 1
        return tokens, logprobs

    def _build_batch(self, plan: list[ScheduledSeq]):
        from qcoder.model.qwen import ForwardBatch

        seqs = [item.seq for item in plan]
        block_tables = torch.zeros(len(seqs), max(len(s.block_table) for s in seqs), dtype=torch.int64)
        for i, s in enumerate(seqs):
            block_tables[i, : len(s.block_table)] = torch.tensor(s.block_table)
        start = [s.num_computed_tokens for s in seqs]
        batch = ForwardBatch.from_sequences(
            [
                s.token_ids[c : c + item.num_new_tokens - len(item.draft)] + item.draft
                for s, c, item in zip(seqs, start, plan, strict=True)
            ],
            start,
            block_tables,
            self.block_manager.block_size,
        )
        # Logits only for sequences that sample this step (a partial prefill chunk has nothing to sample): the last
        # row, and the rows of drafted tokens before it.
        keep = torch.tensor(
            [
                int(end) - k
                for end, item in zip(batch.logits_indices, plan, strict=True)
                if item.samples
                for k in range(len(item.draft), -1, -1)
            ],
            dtype=torch.int64,
        )
        batch.logits_indices = keep
        return batch if self.device.type == "cpu" else batch.to(self.device)

    def _draft(self, seq: Sequence, most: int) -> list[int]:
        """The scheduler's drafter: tokens to verify after the decoding sequence's last one (speculative.py)."""
        req = self.requests[seq.request_id]
        params = seq.params
        if req.drafter is None or req.matcher is not None or req.forced or params.thinking_budget is not None:
            return []
        # One emitted token is the model's own: draft at most max_tokens - 1 past the output so far.
        room = seq.max_tokens - (len(seq.token_ids) - seq.num_prompt_tokens) - 1
        return req.drafter.propose(seq.token_ids, min(most, room))

    def _sample_row(self, req: _Request) -> SampleRow:
        budget = req.seq.params.thinking_budget
        if req.thinking and budget is not None and not req.forced and req.thinking_tokens >= budget:
            req.forced = self.tokenizer.encode(THINK_CLOSE_TEXT)
        seq = req.seq
        return SampleRow(
            seq.params,
            seq.token_ids,
            seq.num_prompt_tokens,
            req.generator,
            req.forced[0] if req.forced else None,
            req.seen,
        )

    @staticmethod
    def _constrained(req: _Request, row: SampleRow) -> bool:
        """Whether this step's token is under the request's grammar: not while thinking, not a forced token."""
        return req.matcher is not None and not req.thinking and row.forced_token is None

    def _append(
        self, req: _Request, tokens: list[int], logprobs: list[Logprobs | None], constrained: bool
    ) -> RequestOutput:
        """Add a step's tokens to the request, stopping at the first that finishes it; returns its output."""
        seq = req.seq
        finish_reason, emitted = None, 0
        for token in tokens:
            emitted += 1
            finish_reason = self._add_token(req, token, constrained)
            if finish_reason is not None:
                break
        if finish_reason is None and emitted > 1:
            self.scheduler.accept_drafted(seq, emitted - 1)  # all but the newest were fed to this step's forward
        if finish_reason is None:
            end = max(req.emitted, len(req.text) - max(req.max_stop_len - 1, 0))
        else:
            end = len(req.text)
            self.requests.pop(seq.request_id)
            self.scheduler.finish(seq)
            self.counters["requests_finished"] += 1
        delta, req.emitted = req.text[req.emitted : end], end
        return RequestOutput(
            request_id=seq.request_id,
            new_token_ids=tokens[:emitted],
            text_delta=delta,
            finished=finish_reason is not None,
            finish_reason=finish_reason,
            logprobs=None if logprobs[0] is None else logprobs[:emitted],
            prompt_tokens=seq.num_prompt_tokens,
            completion_tokens=len(seq.token_ids) - seq.num_prompt_tokens,
            cached_tokens=seq.num_cached_tokens,
        )

    def _add_token(self, req: _Request, token: int, constrained: bool) -> str | None:
        """Append one token and its text; returns the finish reason it causes ("stop", "length") or None."""
        seq, params = req.seq, req.seq.params
        seq.token_ids.append(token)
        if constrained:
            req.matcher.advance(token)
        self.counters["generation_tokens"] += 1
        if req.forced:
            req.forced.pop(0)
        if token == self.think_start:
            req.thinking = True
        elif token == self.think_end:
            req.thinking = False
        elif req.thinking:
            req.thinking_tokens += 1

        finish_reason, hits = None, []
        if token in params.stop_token_ids or (not params.ignore_eos and token in self.eos_token_ids):
            finish_reason = "stop"
        else:
            searched_from = max(0, len(req.text) - req.max_stop_len + 1)
            req.text += req.decoder.add(token)
            hits = [i for i in (req.text.find(s, searched_from) for s in params.stop) if i >= 0]
            if hits:
                req.text = req.text[: min(hits)]
                finish_reason = "stop"
        if finish_reason is None and constrained and req.matcher.finished:
            finish_reason = "stop"  # the grammar is complete: only end-of-sequence could follow
        if finish_reason is None and len(seq.token_ids) - seq.num_prompt_tokens >= seq.max_tokens:
            finish_reason = "length"
        if finish_reason is not None and not hits:
            req.text += req.decoder.flush()  # an incomplete UTF-8 tail becomes U+FFFD, as in a full decode
        return finish_reason
