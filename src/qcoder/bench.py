"""`qcoder bench`: load time, peak RSS, prefill and decode speed of the engine, and of llama.cpp (llama-cpp-python)
on the same GGUF file in the same run, with the ratios.

Each measurement runs in a fresh spawned process, qcoder and llama.cpp alternating, so peak RSS is the engine's
own and both see the same machine load; with --repeats N the best of N is reported (noise on a shared machine only
ever makes things slower). Both get the same token ids and the same thread count.

- prefill: one prompt of --prompt-tokens tokens, computed in one step, time to its first token.
- decode: one sequence, --gen-tokens greedy tokens after a 16-token prompt; the prompt's step is not counted.
- batch decode: --batch sequences at once (distinct 16-token prompts), aggregate tokens/s, prompt step not counted.
  llama.cpp runs them as --batch parallel sequences of one context through its batch API.
- import / load: importing the engine's libraries (torch, llama_cpp), then the model file to a ready engine.
- with --long-prompt N (in its own processes: minutes on 2 cores): time to the first token of an N-token prompt
  (llama.cpp with n_ctx 32768), and "turn 2": the same N tokens plus TURN2_TOKENS new ones, as an agent's next
  request re-sends its history. qcoder serves the N from its prefix cache; llama.cpp from the same context, whose
  common prefix llama-cpp-python's generate() keeps (what llama-server's slots do with cache_prompt), so both
  compute only the new tokens. Also the peak RSS of that process (the KV cache of N tokens included).
"""

from __future__ import annotations

import argparse
import re
import time

from qcoder.errors import QcoderError
from qcoder.threads import POLICIES, configure_openmp

SHORT_PROMPT = 16
WARMUP_TOKENS = 8
TURN2_TOKENS = 200  # what an agent's second request adds to its first: a tool result and a short instruction
LLAMA_LONG_CTX = 32768


def register(subparsers) -> None:
    from qcoder.engine.commands import add_cpu_options
    from qcoder.model.registry import DEFAULT_MODEL

    p = subparsers.add_parser(
        "bench",
        help="measure engine speed (optionally against llama.cpp)",
        description="Measure load time, peak memory, prefill and decode speed of the qcoder engine on one model, "
        "and with --vs-llama-cpp the same for llama.cpp (llama-cpp-python) on the same .gguf file, side by side.",
        epilog="example: qcoder bench --vs-llama-cpp --threads 2",
    )
    p.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"model to measure (default: {DEFAULT_MODEL})")
    p.add_argument("--vs-llama-cpp", action="store_true", help="also measure llama.cpp on the same .gguf file")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both engines (default: 2)")
    add_cpu_options(p, threads=False, speculative=False)  # --threads is its own; speculation is measured both ways
    p.add_argument("--prompt-tokens", type=int, default=512, help="prompt length for prefill (default: 512)")
    p.add_argument("--gen-tokens", type=int, default=128, help="tokens to generate per sequence (default: 128)")
    p.add_argument("--batch", type=int, default=8, help="concurrent sequences for batch decode (default: 8)")
    p.add_argument("--repeats", type=int, default=1, help="measure each engine N times, keep the best (default: 1)")
    p.add_argument(
        "--long-prompt",
        type=int,
        default=0,
        metavar="N",
        help="also time the first token of an N-token prompt (e.g. 16384, an agent's first request) and of a "
        f"second turn that adds {TURN2_TOKENS} tokens to it; takes minutes on 2 cores (default: 0, off)",
    )
    p.add_argument(
        "--omp-wait-policy",
        default="spin",
        choices=POLICIES,
        help="how idle OpenMP threads wait, for both engines: spin briefly then sleep (default, as qcoder runs), "
        "sleep at once (passive: better when other processes keep every core busy) or spin (active)",
    )
    p.set_defaults(func=_run)


def _run(args) -> int:
    configure_openmp(args.omp_wait_policy)  # read by both engines' OpenMP in the child processes
    print_table(run_bench_with(args, args.model, args.vs_llama_cpp), args)
    return 0


def run_bench_with(args: argparse.Namespace, model, vs_llama_cpp: bool) -> dict[str, dict]:
    """run_bench with the measurement options of `qcoder bench` (also the benchmark scripts' options)."""
    return run_bench(
        model,
        vs_llama_cpp=vs_llama_cpp,
        threads=args.threads,
        quant=args.quant,
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        batch=args.batch,
        repeats=args.repeats,
        long_prompt=args.long_prompt,
    )


# ---------------------------------------------------------------- driver


def run_bench(
    model,
    *,
    vs_llama_cpp=False,
    threads=2,
    quant="auto",
    prompt_tokens=512,
    gen_tokens=128,
    batch=8,
    repeats=1,
    long_prompt=0,
) -> dict[str, dict]:
    """{"qcoder": metrics, "llama.cpp": metrics (when asked)}, each metric the best over `repeats` runs."""
    from qcoder.model.registry import resolve_model

    if prompt_tokens < SHORT_PROMPT or gen_tokens < 2 or batch < 1 or threads < 1 or repeats < 1:
        raise QcoderError(f"--prompt-tokens must be >= {SHORT_PROMPT}, --gen-tokens >= 2, --batch/--threads >= 1")
    if long_prompt and not SHORT_PROMPT <= long_prompt <= LLAMA_LONG_CTX - TURN2_TOKENS - 16:
        raise QcoderError(f"--long-prompt must be 0 (off) or {SHORT_PROMPT}..{LLAMA_LONG_CTX - TURN2_TOKENS - 16}")
    path = str(resolve_model(str(model)))
    if vs_llama_cpp:
        if not path.endswith(".gguf"):
            raise QcoderError(f"{path}: --vs-llama-cpp needs a .gguf model")
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise QcoderError("--vs-llama-cpp needs llama-cpp-python (pip install llama-cpp-python)") from None
    ids = bench_token_ids(path, max(prompt_tokens, SHORT_PROMPT * (batch + 1)))
    job = dict(path=path, threads=threads, ids=ids, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, batch=batch)
    engines = {"qcoder": (measure_qcoder, dict(job, quant=quant))}
    if vs_llama_cpp:
        engines["llama.cpp"] = (measure_llama_cpp, job)
    results = alternate(engines, repeats)
    if long_prompt:
        for name, metrics in run_long_prompt(path, long_prompt, threads, quant, repeats, vs_llama_cpp).items():
            results[name].update(metrics)
    return results


def alternate(engines: dict[str, tuple], repeats: int) -> dict[str, dict]:
    """{name: (measure function, its kwargs)} -> {name: best metrics}: each run in its own process, the engines
    taking turns, so that both see the same machine load."""
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, (fn, kwargs) in engines.items():
            runs[name].append(in_child(fn, **kwargs))
    return {name: best_of(rs) for name, rs in runs.items()}


def best_of(runs: list[dict]) -> dict:
    """Per metric, the best run: the lowest time / memory, the highest rate."""
    out = dict(runs[0])
    for key in out:
        values = [r[key] for r in runs]
        if isinstance(out[key], (int, float)):
            out[key] = max(values) if key.endswith("_tps") else min(values)
    return out


def bench_token_ids(path: str, count: int) -> list[int]:
    """`count` token ids of real code (this package's own source, cycled), so attention and sampling see text."""
    from pathlib import Path

    from qcoder.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_path(path)
    sources = sorted((Path(__file__).resolve().parents[1]).rglob("*.py"))
    ids: list[int] = []
    for file in sources:
        ids += tokenizer.encode(file.read_text())
        if len(ids) >= count:
            break
    while len(ids) < count:
        ids += ids
    return ids[:count]


_RESULT = "@@bench-result@@ "


def in_child(fn, **kwargs):
    """Run this module's fn(**kwargs) in a fresh interpreter (its own peak RSS and thread pool) and return its
    JSON-able result. A subprocess rather than multiprocessing: spawn re-runs an unguarded __main__."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from qcoder import bench\n"
        "job = json.load(sys.stdin)\n"
        "result = getattr(bench, job['fn'])(**job['kwargs'])\n"
        f"print({_RESULT!r} + json.dumps(result), flush=True)\n"
    )
    job = json.dumps({"fn": fn.__name__, "kwargs": kwargs})
    proc = subprocess.run([sys.executable, "-c", code], input=job, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT) :])
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise QcoderError(f"bench: {fn.__name__} failed: {tail}")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- qcoder


def load_engine(path: str, quant: str, threads: int, kv_cache_tokens: int, prefix_caching: bool = False):
    """An LLMEngine on CPU, loaded as `qcoder generate --quant` loads it; without prefix caching unless asked
    (then every measurement computes its whole prompt)."""
    import torch

    from qcoder.engine.engine import LLMEngine
    from qcoder.engine.tokenizer import Tokenizer
    from qcoder.model.loader import load_model

    torch.set_num_threads(threads)
    model, config = load_model(path, quant=quant)
    return LLMEngine.from_parts(
        model,
        config,
        Tokenizer.from_path(path),
        kv_cache_tokens=kv_cache_tokens,
        max_num_batched_tokens=4096,
        enable_prefix_caching=prefix_caching,
    )


def _run_engine(
    engine, prompts: list[list[int]], max_tokens: int, stop_at_eos: bool = False
) -> tuple[float, float, list[list[int]]]:
    """(seconds to the first token, seconds of the rest, generated ids per prompt): greedy, no early stop unless
    stop_at_eos."""
    from qcoder.engine.sampling import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=not stop_at_eos)
    for i, p in enumerate(prompts):
        engine.add_request(f"bench-{time.monotonic_ns()}-{i}", p, params)
    order = list(engine.requests)
    tokens: dict[str, list[int]] = {r: [] for r in order}
    t0 = time.perf_counter()
    first = None
    while engine.has_unfinished():
        outputs = engine.step()
        for out in outputs:
            tokens[out.request_id] += out.new_token_ids
        if first is None and any(out.new_token_ids for out in outputs):  # a long prompt takes several steps
            first = time.perf_counter() - t0
    return first, time.perf_counter() - t0 - first, [tokens[r] for r in order]


def import_qcoder() -> float:
    """Seconds to import what loading an engine needs (torch above all), so `load` is the model's own time."""
    t0 = time.perf_counter()
    import torch  # noqa: F401

    from qcoder.engine import engine, tokenizer  # noqa: F401
    from qcoder.model import gguf, gguf_linear, loader  # noqa: F401 - the loader imports the GGUF modules lazily

    return time.perf_counter() - t0


def measure_qcoder(path, threads, ids, prompt_tokens, gen_tokens, batch, quant="auto") -> dict:
    import_s = import_qcoder()
    t0 = time.perf_counter()
    engine = load_engine(
        path,
        quant,
        threads,
        kv_cache_tokens=_kv_tokens(prompt_tokens, gen_tokens, batch),
    )
    load_s = time.perf_counter() - t0
    _run_engine(engine, [ids[:WARMUP_TOKENS]], 2)
    prefill_s, _, _ = _run_engine(engine, [ids[:prompt_tokens]], 1)
    _, decode_s, _ = _run_engine(engine, [ids[:SHORT_PROMPT]], gen_tokens)
    _, batch_s, _ = _run_engine(engine, _batch_prompts(ids, batch), gen_tokens)
    metrics = _metrics(load_s, prefill_s, decode_s, batch_s, prompt_tokens, gen_tokens, batch)
    return {"import_s": import_s, **metrics, **measure_speculation(engine, ids[:SHORT_PROMPT], gen_tokens)}


# ---------------------------------------------------------------- speculative decoding

# The edit workload: an agent's typical request, a function it has just read, to be written back with one change.
EDIT_FUNCTION = '''def summarize_orders(orders, currency="EUR", min_total=0.0):
    """Group paid orders by customer and return per-customer statistics, largest spender first."""
    by_customer = {}
    for order in orders:
        if order.get("status") != "paid":
            continue
        if order.get("currency", currency) != currency:
            continue
        customer = order["customer_id"]
        entry = by_customer.setdefault(
            customer,
            {"customer_id": customer, "orders": 0, "total": 0.0, "items": 0, "largest": 0.0},
        )
        amount = 0.0
        for line in order.get("lines", []):
            quantity = int(line.get("quantity", 1))
            price = float(line["unit_price"])
            discount = float(line.get("discount", 0.0))
            amount += quantity * price * (1.0 - discount)
            entry["items"] += quantity
        entry["orders"] += 1
        entry["total"] += amount
        if amount > entry["largest"]:
            entry["largest"] = amount
    result = []
    for entry in by_customer.values():
        if entry["total"] < min_total:
            continue
        entry["average"] = entry["total"] / entry["orders"]
        entry["total"] = round(entry["total"], 2)
        entry["average"] = round(entry["average"], 2)
        entry["largest"] = round(entry["largest"], 2)
        result.append(entry)
    result.sort(key=lambda e: (-e["total"], e["customer_id"]))
    return result
'''
EDIT_REQUEST = (
    "Here is a Python function:\n\n```python\n{function}```\n\n"
    "Return the whole function with one change: rename the parameter `min_total` to `minimum_total` everywhere. "
    "Reply with the complete function in one ```python block and nothing else."
)
EDIT_MAX_TOKENS = 512


def edit_prompt_ids(tokenizer) -> list[int]:
    """The edit workload's prompt, through the model's chat template."""
    from qcoder.engine.chat_template import ChatTemplate

    content = EDIT_REQUEST.format(function=EDIT_FUNCTION)
    text = ChatTemplate.for_tokenizer(tokenizer).render([{"role": "user", "content": content}], add_generation_prompt=True)
    return tokenizer.encode(text)


def measure_speculation(
    engine, plain_prompt: list[int], gen_tokens: int, edit_max_tokens: int = EDIT_MAX_TOKENS
) -> dict:
    """Greedy decode speed on the edit workload without and with n-gram speculation (same model, same output,
    stopping at the model's end of turn), its acceptance rate, and plain generation with speculation."""
    from qcoder.engine.engine import LLMEngine

    spec = LLMEngine.from_parts(
        engine.model,
        engine.config,
        engine.tokenizer,
        kv_cache_tokens=engine.block_manager.num_blocks * engine.block_manager.block_size,
        enable_prefix_caching=False,
        speculative="ngram",
    )
    edit = edit_prompt_ids(engine.tokenizer)
    _, edit_s, edit_out = _run_engine(engine, [edit], edit_max_tokens, stop_at_eos=True)
    _, edit_spec_s, edit_spec_out = _run_engine(spec, [edit], edit_max_tokens, stop_at_eos=True)
    if edit_spec_out != edit_out:
        raise QcoderError("bench: greedy output with speculation differs from the output without it")
    drafted, accepted = spec.counters["draft_tokens"], spec.counters["draft_tokens_accepted"]
    _, plain_spec_s, _ = _run_engine(spec, [plain_prompt], gen_tokens)
    generated = len(edit_out[0])
    return dict(
        edit_tokens=generated,
        edit_decode_tps=(generated - 1) / edit_s,
        edit_spec_decode_tps=(generated - 1) / edit_spec_s,
        edit_acceptance=accepted / max(drafted, 1),
        # each decode step emits one token of the model's plus the drafted ones it accepted
        edit_tokens_per_step=(generated - 1) / max(generated - 1 - accepted, 1),
        spec_decode_tps=(gen_tokens - 1) / plain_spec_s,
    )


def _batch_prompts(ids: list[int], batch: int) -> list[list[int]]:
    """`batch` distinct short prompts, after the first SHORT_PROMPT ids (the single-stream prompt)."""
    return [ids[SHORT_PROMPT * (i + 1) : SHORT_PROMPT * (i + 2)] for i in range(batch)]


def _metrics(load_s, prefill_s, decode_s, batch_s, prompt_tokens, gen_tokens, batch) -> dict:
    """One engine's figures from its timings (the first generated token belongs to the prompt's step)."""
    return dict(
        load_s=load_s,
        peak_rss_mb=_peak_rss_mb(),
        prefill_tps=prompt_tokens / prefill_s,
        decode_tps=(gen_tokens - 1) / decode_s,
        batch_decode_tps=batch * (gen_tokens - 1) / batch_s,
    )


def _kv_tokens(prompt_tokens: int, gen_tokens: int, batch: int) -> int:
    """Room for the longest single run and for the batch run, with a block of slack per sequence."""
    return max(prompt_tokens + 2 * 16, batch * (SHORT_PROMPT + gen_tokens + 16))


def qcoder_greedy(path: str, prompts: list[list[int]], max_tokens: int, quant="auto", threads=2) -> list[list[int]]:
    engine = load_engine(
        path, quant, threads, kv_cache_tokens=len(prompts) * (max(map(len, prompts)) + max_tokens + 32)
    )
    return _run_engine(engine, prompts, max_tokens)[2]


# ---------------------------------------------------------------- llama.cpp


def load_llama(path: str, threads: int, n_ctx: int):
    from llama_cpp import Llama

    return Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, n_batch=512, verbose=False)


def import_llama_cpp() -> float:
    t0 = time.perf_counter()
    import llama_cpp  # noqa: F401

    return time.perf_counter() - t0


def measure_llama_cpp(path, threads, ids, prompt_tokens, gen_tokens, batch) -> dict:
    import_s = import_llama_cpp()
    t0 = time.perf_counter()
    from qcoder.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_path(path)
    edit = edit_prompt_ids(tokenizer)
    n_ctx = max(_kv_tokens(prompt_tokens, gen_tokens, batch), len(edit) + EDIT_MAX_TOKENS + 16)
    llm = load_llama(path, threads, n_ctx=n_ctx)
    load_s = time.perf_counter() - t0
    llm.eval(ids[:WARMUP_TOKENS])
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids[:prompt_tokens])
    prefill_s = time.perf_counter() - t
    llm.reset()
    decode_s = _llama_greedy(llm, ids[:SHORT_PROMPT], gen_tokens)[1]
    batch_s = _llama_batch_decode(llm, _batch_prompts(ids, batch), gen_tokens)
    edit_out, edit_s = _llama_greedy(llm, edit, EDIT_MAX_TOKENS, stop_ids=set(tokenizer.eos_token_ids))
    metrics = _metrics(load_s, prefill_s, decode_s, batch_s, prompt_tokens, gen_tokens, batch)
    return {
        "import_s": import_s,
        **metrics,
        "edit_tokens": len(edit_out),
        "edit_decode_tps": (len(edit_out) - 1) / edit_s,
        "isa": llama_cpp_isa(),
    }


# Features in llama.cpp's system info that are not instruction sets
_NOT_ISA = {"LLAMAFILE", "OPENMP", "REPACK", "ACCELERATE", "KLEIDIAI"}


def llama_cpp_isa() -> str:
    """The instruction sets llama.cpp's CPU backend was built for and uses, e.g. "AVX2 FMA F16C AVX512": a figure
    against llama.cpp means little without them (a qcoder forced to AVX2 against an AVX-512 llama.cpp)."""
    import llama_cpp

    return isa_of_system_info(llama_cpp.llama_print_system_info().decode(errors="replace"))


def isa_of_system_info(info: str) -> str:
    """ "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | OPENMP = 1 | " -> "AVX2": the instruction sets on, past SSE."""
    on = re.findall(r"([A-Z0-9_]+) = 1", info)
    return " ".join(f for f in on if f not in _NOT_ISA and not f.startswith("SSE") and f != "SSSE3")


def _llama_greedy(llm, prompt: list[int], max_tokens: int, stop_ids=frozenset()) -> tuple[list[int], float]:
    """(greedy ids, seconds after the first token) through llama.cpp's own argmax sampler; a token of stop_ids
    ends it (and is counted, as qcoder counts its end-of-turn token)."""
    out: list[int] = []
    llm.reset()
    t = None
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        if t is None:
            t = time.perf_counter()
        out.append(token)
        if len(out) == max_tokens or token in stop_ids:
            break
    return out, time.perf_counter() - t


def _llama_batch_decode(llm, prompts: list[list[int]], max_tokens: int) -> float:
    """Decode len(prompts) sequences together in one llama.cpp context (one llama_decode per step, as its server's
    parallel slots do); returns the seconds after the prompts' step."""
    import ctypes

    import llama_cpp
    import numpy as np

    params = llm.context_params
    params.n_seq_max = len(prompts)
    params.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise QcoderError("llama.cpp could not create a batch context")
    n_vocab = llm.n_vocab()
    total = sum(map(len, prompts))
    lb = llama_cpp.llama_batch_init(max(total, len(prompts)), 0, 1)
    try:

        def decode(items: list[tuple[int, int, int, bool]]) -> list[int]:
            """items: (token, position, sequence, wants logits) -> argmax of each wanted row."""
            lb.n_tokens = len(items)
            for i, (tok, pos, seq, want) in enumerate(items):
                lb.token[i], lb.pos[i], lb.n_seq_id[i], lb.logits[i] = tok, pos, 1, want
                lb.seq_id[i][0] = seq
            if llama_cpp.llama_decode(ctx, lb) != 0:
                raise QcoderError("llama_decode failed")
            rows = [i for i, it in enumerate(items) if it[3]]
            return [
                int(
                    np.ctypeslib.as_array(
                        ctypes.cast(llama_cpp.llama_get_logits_ith(ctx, i), ctypes.POINTER(ctypes.c_float)),
                        shape=(n_vocab,),
                    ).argmax()
                )
                for i in rows
            ]

        items = [(t, j, s, j == len(p) - 1) for s, p in enumerate(prompts) for j, t in enumerate(p)]
        nxt = decode(items)
        t = time.perf_counter()
        for step in range(max_tokens - 1):
            nxt = decode([(tok, len(p) + step, s, True) for s, (tok, p) in enumerate(zip(nxt, prompts, strict=True))])
        return time.perf_counter() - t
    finally:
        llama_cpp.llama_batch_free(lb)
        llama_cpp.llama_free(ctx)


def llama_cpp_greedy(path: str, prompts: list[list[int]], max_tokens: int, threads=2) -> list[list[int]]:
    llm = load_llama(path, threads, n_ctx=max(map(len, prompts)) + max_tokens + 16)
    return [_llama_greedy(llm, p, max_tokens)[0] for p in prompts]


# ---------------------------------------------------------------- long prompts


def run_long_prompt(path: str, tokens: int, threads: int, quant: str, repeats: int, vs_llama_cpp: bool):
    """The --long-prompt figures of each engine: long_ttft_s, turn2_ttft_s, long_peak_rss_mb."""
    job = dict(path=path, threads=threads, ids=bench_token_ids(path, tokens + TURN2_TOKENS), tokens=tokens)
    engines = {"qcoder": (measure_long_qcoder, dict(job, quant=quant))}
    if vs_llama_cpp:
        engines["llama.cpp"] = (measure_long_llama_cpp, job)
    return alternate(engines, repeats)


def measure_long_qcoder(path, threads, ids, tokens, quant="auto") -> dict:
    import_qcoder()
    engine = load_engine(path, quant, threads, kv_cache_tokens=tokens + TURN2_TOKENS + 64, prefix_caching=True)
    _run_engine(engine, [ids[:WARMUP_TOKENS]], 2)
    ttft_s = _run_engine(engine, [ids[:tokens]], 1)[0]
    engine.add_request("turn-2", ids[: tokens + TURN2_TOKENS], _greedy(1))
    t0 = time.perf_counter()
    out = None
    while out is None:  # steps that only compute a prompt chunk return nothing
        out = next(iter(engine.step()), None)
    turn2_s = time.perf_counter() - t0
    block = engine.block_manager.block_size
    if out.cached_tokens < tokens // block * block:
        raise QcoderError(f"turn 2 found only {out.cached_tokens} of its first {tokens} tokens in the prefix cache")
    return dict(long_ttft_s=ttft_s, turn2_ttft_s=turn2_s, long_peak_rss_mb=_peak_rss_mb())


def _greedy(max_tokens: int):
    from qcoder.engine.sampling import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)


def measure_long_llama_cpp(path, threads, ids, tokens) -> dict:
    import_llama_cpp()
    llm = load_llama(path, threads, n_ctx=LLAMA_LONG_CTX)
    llm.eval(ids[:WARMUP_TOKENS])
    llm.reset()
    ttft_s = _llama_first_token(llm, ids[:tokens])
    turn2_s = _llama_first_token(llm, ids[: tokens + TURN2_TOKENS])  # generate() keeps the common prefix
    if llm.n_tokens != tokens + TURN2_TOKENS:
        raise QcoderError(f"llama.cpp turn 2 ended at {llm.n_tokens} tokens, expected {tokens + TURN2_TOKENS}")
    return dict(long_ttft_s=ttft_s, turn2_ttft_s=turn2_s, long_peak_rss_mb=_peak_rss_mb())


def _llama_first_token(llm, prompt: list[int]) -> float:
    """Seconds to llama.cpp's first greedy token of `prompt`, in its current context."""
    t0 = time.perf_counter()
    next(iter(llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)))
    return time.perf_counter() - t0


# ---------------------------------------------------------------- table

ROWS = [
    ("import_s", "import (s)", "{:.1f}", False),
    ("load_s", "load (s)", "{:.1f}", False),
    ("peak_rss_mb", "peak RSS (MiB)", "{:.0f}", False),
    ("prefill_tps", "prefill (tok/s)", "{:.1f}", True),
    ("decode_tps", "decode, 1 seq (tok/s)", "{:.1f}", True),
    ("batch_decode_tps", "decode, batch (tok/s, aggregate)", "{:.1f}", True),
]
LONG_ROWS = [  # with --long-prompt
    ("long_ttft_s", "TTFT, long prompt (s)", "{:.1f}", False),
    ("turn2_ttft_s", f"TTFT, turn 2: +{TURN2_TOKENS} tokens (s)", "{:.2f}", False),
    ("long_peak_rss_mb", "peak RSS, long prompt (MiB)", "{:.0f}", False),
]


def table_rows(results: dict[str, dict]) -> list[list[str]]:
    """[metric, qcoder, llama.cpp, qcoder/llama.cpp] per row (ratios > 1 favour qcoder: speed up, time down)."""
    rows = []
    for key, label, fmt, higher_better in ROWS + LONG_ROWS:
        if key not in results["qcoder"]:
            continue
        row = [label] + [fmt.format(r[key]) for r in results.values()]
        if "llama.cpp" in results:
            q, ref = results["qcoder"][key], results["llama.cpp"][key]
            ratio = q / ref if higher_better else ref / q
            row.append(f"{ratio:.2f}x")
        rows.append(row)
    if "llama.cpp" in results:  # the batch target is set against llama.cpp's single stream
        q, ref = results["qcoder"]["batch_decode_tps"], results["llama.cpp"]["decode_tps"]
        rows.append(["batch decode vs llama.cpp 1 seq", "", "", f"{q / ref:.2f}x"])
    return rows + speculation_rows(results)


# The edit workload and speculative decoding, qcoder's figures each set against llama.cpp's without speculation.
SPECULATION_ROWS = [
    ("edit_decode_tps", "edit: decode, 1 seq (tok/s)", "edit_decode_tps"),
    ("edit_spec_decode_tps", "edit: decode, n-gram speculation (tok/s)", "edit_decode_tps"),
    ("edit_acceptance", "edit: drafted tokens accepted", None),
    ("edit_tokens_per_step", "edit: tokens per step, speculation", None),
    ("spec_decode_tps", "decode, 1 seq, n-gram speculation (tok/s)", "decode_tps"),
]


def speculation_rows(results: dict[str, dict]) -> list[list[str]]:
    rows = []
    q, ref = results["qcoder"], results.get("llama.cpp")
    for key, label, against in SPECULATION_ROWS:
        if key not in q:
            continue
        fmt = "{:.0%}" if key == "edit_acceptance" else "{:.1f}" if key.endswith("tps") else "{:.2f}"
        row = [label, fmt.format(q[key])]
        if ref is not None:
            row.append(fmt.format(ref[key]) if key in ref else "")
            row.append(f"{q[key] / ref[against]:.2f}x" if against in ref else "")
        rows.append(row)
    return rows


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from qcoder.model import cpu_kernels

    title = (
        f"{args.model}: {args.threads} threads, qcoder --quant {args.quant}, prompt {args.prompt_tokens}, "
        f"generate {args.gen_tokens}, batch {args.batch}, "
        + (f"long prompt {args.long_prompt} (llama.cpp n_ctx {LLAMA_LONG_CTX}), " if args.long_prompt else "")
        + f"best of {args.repeats}, OMP {args.omp_wait_policy}, "
        f"{cpu_kernels.describe()}"
        + (f"; llama.cpp built for {results['llama.cpp']['isa']}" if "isa" in results.get("llama.cpp", {}) else "")
    )
    table = Table(title=title)
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    if "llama.cpp" in results:
        table.add_column("qcoder vs llama.cpp", justify="right")
    for row in table_rows(results):
        table.add_row(*row)
    Console().print(table)
