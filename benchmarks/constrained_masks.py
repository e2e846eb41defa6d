"""Per-token cost of grammar token masks on the CPU: llguidance against xgrammar, with the real Qwen vocabulary.

    .venv/bin/python benchmarks/constrained_masks.py [--tokenizer DIR] [--batch 8] [--repeats 3] [--model NAME]

Both libraries are given the same vocabulary (the raw bytes of each of the model's 151,936 token ids, taken from
qcoder's tokenizer) and the same two constraints:
  - json: a JSON schema (nested object, enum, array of objects, integer and string fields);
  - tool call: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` for one of five agent tools, each
    with its own argument schema (Qwen2.5's Hermes format).
For each, a valid document is tokenized and `--batch` matchers walk it together; each step fills the batch's
bitmask (one int32 row of 151,936 bits per sequence) and then every matcher consumes its token. Reported: one-off
set-up (tokenizer tables, grammar compilation) and the per-step time of the batched mask fill, sequential (one
thread) and with the library's own thread pool, plus applying the masks to a [batch, vocab] float logits tensor.
With --model, decode steps of that model with 0, 1 and all sequences constrained (qcoder's engine, llguidance).

xgrammar is not a qcoder dependency (it pulls in triton); install it beside the venv to run its half, e.g.
`pip install --target /tmp/xgr --no-deps xgrammar apache-tvm-ffi` and `PYTHONPATH=/tmp/xgr`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER = ROOT.parent / "shared" / "data" / "qwen2.5-coder-tokenizer"
VOCAB = 151936  # the model's logits width (the tokenizer has 151,665 entries)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "integer"},
        "license": {"enum": ["MIT", "Apache-2.0", "GPL-3.0"]},
        "dependencies": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"package": {"type": "string"}, "pinned": {"type": "boolean"}},
                "required": ["package", "pinned"],
                "additionalProperties": False,
            },
        },
        "description": {"type": "string"},
    },
    "required": ["name", "version", "license", "dependencies", "description"],
    "additionalProperties": False,
}
DOCUMENT = {
    "name": "textstats",
    "version": 3,
    "license": "Apache-2.0",
    "dependencies": [{"package": "numpy", "pinned": True}, {"package": "rich", "pinned": False}],
    "description": "Word and line statistics for text files, with a small command line and a JSON report.",
}


def _tool(name: str, **properties) -> dict:
    return {
        "type": "object",
        "properties": {
            "name": {"const": name},
            "arguments": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


STRING, INTEGER = {"type": "string"}, {"type": "integer"}
TOOL_CALL_SCHEMA = {
    "anyOf": [
        _tool("read_file", path=STRING),
        _tool("write_file", path=STRING, content=STRING),
        _tool("edit", path=STRING, old_string=STRING, new_string=STRING),
        _tool("run_shell", command=STRING, timeout=INTEGER),
        _tool("grep", pattern=STRING, path=STRING),
    ]
}
TOOL_CALL = {
    "name": "edit",
    "arguments": {
        "path": "textstats/core.py",
        "old_string": "def longest_line(lines):\n    return min(len(line) for line in lines)\n",
        "new_string": "def longest_line(lines):\n    return max((len(line) for line in lines), default=0)\n",
    },
}
PREFIX, SUFFIX = "<tool_call>\n", "\n</tool_call>"


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # ", " and ": " separators, the style Qwen models write


class Timer:
    """Wall and CPU time (all threads of this process) per sample: on a shared machine CPU time is the steadier."""

    def __init__(self):
        self.samples: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self):
        self._start, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.samples.append(time.perf_counter() - self._start)
        self.cpu.append(time.process_time() - self._cpu)

    def summary(self) -> str:
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (
            f"wall mean {1e6 * statistics.fmean(ordered):7.0f} us, p50 {1e6 * ordered[len(ordered) // 2]:7.0f}, "
            f"p99 {1e6 * p99:7.0f}; cpu mean {1e6 * statistics.fmean(self.cpu):7.0f} us"
        )


# ---------------------------------------------------------------- the two libraries


class Llguidance:
    name = "llguidance"

    def __init__(self, tokenizer, threads: int):
        import llguidance

        self.llg = llguidance
        vocab = [tokenizer.token_bytes(i) for i in range(VOCAB)]
        special = [i for i, t in tokenizer._backend.get_added_tokens_decoder().items() if t.special]

        class Wrapper:
            eos_token_id = min(tokenizer.eos_token_ids)
            bos_token_id = None
            tokens = vocab
            special_token_ids = special

            def __call__(self, data: bytes):
                return tokenizer.encode(data.decode("utf-8", errors="replace"))

        self.tok = llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(Wrapper()), n_vocab=VOCAB, eos_token=sorted(tokenizer.eos_token_ids)
        )
        self.executor = llguidance.LLExecutor(num_threads=threads)

    def compile(self, kind: str):
        options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
        if kind == "json":
            return self.llg.LLMatcher.grammar_from_json_schema(SCHEMA, overrides=options)
        lark = f'start: "<tool_call>\\n" call "\\n</tool_call>"\ncall: %json {json.dumps(TOOL_CALL_SCHEMA)}\n'
        return self.llg.LLMatcher.grammar_from_lark(lark)

    def matchers(self, grammar, n: int):
        out = [self.llg.LLMatcher(self.tok, grammar, log_level=0) for _ in range(n)]
        assert not out[0].is_error(), out[0].get_error()
        return out

    def fill(self, matchers, bitmask, parallel: bool) -> None:
        from llguidance.torch import fill_next_token_bitmask, fill_next_token_bitmask_par

        if parallel:
            fill_next_token_bitmask_par(self.executor, [(m, i) for i, m in enumerate(matchers)], bitmask)
        else:
            for i, m in enumerate(matchers):
                fill_next_token_bitmask(m, bitmask, i)

    def consume(self, matchers, token: int) -> None:
        for m in matchers:
            assert m.consume_token(token), m.get_error()


class Xgrammar:
    name = "xgrammar"

    def __init__(self, tokenizer, threads: int):
        import xgrammar

        self.xgr = xgrammar
        vocab = [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
        info = xgrammar.TokenizerInfo(
            vocab, xgrammar.VocabType.RAW, vocab_size=VOCAB, stop_token_ids=sorted(tokenizer.eos_token_ids)
        )
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=threads)
        self.batch = xgrammar.BatchGrammarMatcher(max_threads=threads)

    def compile(self, kind: str):
        xgr = self.xgr
        if kind == "json":
            return self.compiler.compile_json_schema(json.dumps(SCHEMA), any_whitespace=False)
        grammar = xgr.Grammar.concat(
            xgr.Grammar.from_ebnf('root ::= "<tool_call>\\n"'),
            xgr.Grammar.from_json_schema(json.dumps(TOOL_CALL_SCHEMA), any_whitespace=False),
            xgr.Grammar.from_ebnf('root ::= "\\n</tool_call>"'),
        )
        return self.compiler.compile_grammar(grammar)

    def matchers(self, grammar, n: int):
        return [self.xgr.GrammarMatcher(grammar) for _ in range(n)]

    def fill(self, matchers, bitmask, parallel: bool) -> None:
        if parallel:
            self.batch.batch_fill_next_token_bitmask(matchers, bitmask)
        else:
            for i, m in enumerate(matchers):
                m.fill_next_token_bitmask(bitmask, i)

    def consume(self, matchers, token: int) -> None:
        for m in matchers:
            assert m.accept_token(token)


# ---------------------------------------------------------------- the walk


def allowed(bitmask: torch.Tensor, row: int, token: int) -> bool:
    return bool((int(bitmask[row, token // 32]) >> (token % 32)) & 1)


def walk(lib, grammar, tokens, batch: int, parallel: bool, first: Timer, fill_timer: Timer, consume_timer: Timer):
    """The first mask of fresh matchers is timed apart: it builds lexer state the later steps reuse."""
    matchers = lib.matchers(grammar, batch)
    bitmask = torch.full((batch, (VOCAB + 31) // 32), -1, dtype=torch.int32)
    masks = []
    for step, token in enumerate(tokens):
        with first if step == 0 else fill_timer:
            lib.fill(matchers, bitmask, parallel)
        masks.append(bitmask.clone())
        assert all(allowed(bitmask, i, token) for i in range(batch)), f"{lib.name} masked out a valid token {token}"
        with consume_timer:
            lib.consume(matchers, token)
    return masks


def apply_masks(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """What qcoder's sampler does with a bitmask (qcoder.engine.structured.apply_bitmask)."""
    sys.path.insert(0, str(ROOT / "src"))
    from qcoder.engine.structured import apply_bitmask

    return apply_bitmask(logits, bitmask)


def engine_steps(model: str, batch: int, max_tokens: int, threads: int) -> None:
    """Decode step time on a real model with 0, 1 and all of `batch` sequences under the JSON schema, counting only
    steps where all `batch` sequences decode: what a constrained neighbour costs the unconstrained ones."""
    from qcoder.engine.engine import LLMEngine
    from qcoder.engine.sampling import SamplingParams
    from qcoder.engine.structured import Constraint

    engine = LLMEngine(model, threads=threads)
    text = engine.chat_template.render([{"role": "user", "content": "Describe the package textstats as JSON."}])
    prompt = engine.tokenizer.encode(text)
    constraint = Constraint.json_schema(SCHEMA)
    engine.structured.matcher(constraint)  # vocabulary tables and grammar compiled before timing
    print(f"\nengine: {model}, {batch} sequences, greedy, up to {max_tokens} tokens, {threads} threads")
    for constrained in (0, 1, batch, 0):
        for i in range(batch):
            params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
            if i < constrained:
                params = SamplingParams(max_tokens=max_tokens, temperature=0, constraint=constraint)
            engine.add_request(f"r{i}", prompt, params)
        timer = Timer()
        while engine.has_unfinished():
            full = len(engine.scheduler.running) == batch and all(
                s.num_pending_tokens == 1 for s in engine.scheduler.running
            )
            with Timer() if not full else timer:
                engine.step()
        print(f"  {constrained} of {batch} constrained: {len(timer.samples)} full decode steps, {timer.summary()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--libs", default="llguidance,xgrammar")
    parser.add_argument("--model", help="also time decode steps of this model with constrained neighbours")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from qcoder.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_path(args.tokenizer)
    documents = {"json": dumps(DOCUMENT), "tool call": PREFIX + dumps(TOOL_CALL) + SUFFIX}
    print(f"tokenizer {args.tokenizer}, vocab {VOCAB}, batch {args.batch}, threads {args.threads}")
    for name, text in documents.items():
        print(f"  {name}: {len(tokenizer.encode(text))} tokens")
    libs = {"llguidance": Llguidance, "xgrammar": Xgrammar}
    real_masks: list[torch.Tensor] = []  # every step's bitmasks, to time applying real (not random) masks
    for lib_name in args.libs.split(","):
        setup = Timer()
        try:
            with setup:
                lib = libs[lib_name](tokenizer, args.threads)
        except ImportError as exc:
            print(f"\n{lib_name}: not installed ({exc})")
            continue
        print(f"\n{lib_name}: vocabulary set-up {setup.samples[0]:.2f} s wall, {setup.cpu[0]:.2f} s cpu")
        for kind, text in documents.items():
            start = time.perf_counter()
            grammar = lib.compile("json" if kind == "json" else "tool")
            lib.matchers(grammar, 1)
            print(f"  {kind}: compile + first matcher {1e3 * (time.perf_counter() - start):.1f} ms")
            tokens = tokenizer.encode(text)
            for parallel in (False, True):
                first, fill, consume = Timer(), Timer(), Timer()
                for _ in range(args.repeats):
                    real_masks += walk(lib, grammar, tokens, args.batch, parallel, first, fill, consume)
                mode = "thread pool" if parallel else "sequential"
                print(f"    {mode}: first step {1e3 * statistics.fmean(first.samples):.1f} ms; later steps:")
                print(f"      fill {args.batch} masks  {fill.summary()}")
                print(f"      consume {args.batch}     {consume.summary()}")
    logits = torch.randn(args.batch, VOCAB)
    timer = Timer()
    for bitmask in real_masks[:200]:
        with timer:
            apply_masks(logits, bitmask)
    print(f"\napply {args.batch} masks (from the walks) to [{args.batch}, {VOCAB}] logits: {timer.summary()}")
    if args.model:
        engine_steps(args.model, args.batch, args.max_tokens, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
