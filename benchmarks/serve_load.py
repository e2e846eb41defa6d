"""Load test: `qcoder serve` against llama-cpp-python's server on the same GGUF, with N concurrent streaming clients.

    python benchmarks/serve_load.py --levels 1,4,8,16 --max-tokens 64 --json serve_load.json

Each server is started on a free 127.0.0.1 port, waited for, warmed up with one request, driven with the openai
SDK (streaming chat completions, temperature 0) at every concurrency level, and stopped (SIGINT, then kill).
Reported per level: aggregate generated tokens/s, time to first token (TTFT) p50/p99, inter-token latency
(ITL, gaps between streamed content chunks) p50/p99, and qcoder / llama.cpp ratios.

llama_cpp.server serves one request at a time (a global lock, no continuous batching) and by default cuts off a
running stream when another request arrives (`interrupt_requests`); it runs here with `--interrupt_requests False`
so concurrent requests queue instead of being truncated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
from openai import AsyncOpenAI
from rich.console import Console
from rich.table import Table

PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome.",
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "Explain what a Python list comprehension is, with one example.",
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Write a bash one-liner that counts the lines of all .py files in a directory.",
    "Write a Python function that removes duplicates from a list while keeping order.",
    "Write a SQL query that returns the ten most recent rows of a table named events.",
    "Write a Python function that flattens a nested list of integers.",
]
METRICS = (
    ("tok/s", "tokens_per_s"),
    ("TTFT p50 ms", "ttft_p50_ms"),
    ("TTFT p99 ms", "ttft_p99_ms"),
    ("ITL p50 ms", "itl_p50_ms"),
    ("ITL p99 ms", "itl_p99_ms"),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]  # nearest rank


@contextlib.contextmanager
def running(name: str, cmd: list[str], port: int, env: dict, startup_timeout: float):
    """Start a server, wait until /v1/models answers, yield (base_url, model id); always stop it."""
    log = tempfile.NamedTemporaryFile("w+", prefix=f"serve_load_{name}_", suffix=".log", delete=False)
    print(f"[{name}] {shlex.join(cmd)}  (log: {log.name})", file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline, model = time.monotonic() + startup_timeout, None
        while model is None:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {startup_timeout:.0f}s (see {log.name})")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{base}/models", timeout=5, trust_env=False)
                if r.status_code == 200:
                    model = r.json()["data"][0]["id"]
            time.sleep(0 if model else 1)
        print(f"[{name}] ready after {startup_timeout - (deadline - time.monotonic()):.0f}s", file=sys.stderr)
        yield base, model
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


async def one_request(client: AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> dict:
    start = time.perf_counter()
    stamps: list[float] = []
    usage_tokens = None
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None and chunk.usage.completion_tokens is not None:
            usage_tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
    return {
        "tokens": usage_tokens if usage_tokens is not None else len(stamps),
        "from_usage": usage_tokens is not None,
        "ttft": stamps[0] - start if stamps else None,
        "itl": [b - a for a, b in zip(stamps, stamps[1:], strict=False)],
    }


async def run_level(base: str, model: str, clients: int, args) -> dict:
    http = httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=clients + 4))
    client = AsyncOpenAI(base_url=base, api_key="none", max_retries=0, timeout=args.timeout, http_client=http)
    samples: list[dict] = []
    errors: list[str] = []

    async def worker(k: int) -> None:
        for i in range(args.requests_per_client):  # bounded in count; each request bounded in time
            prompt = PROMPTS[(k + i) % len(PROMPTS)]
            try:
                samples.append(
                    await asyncio.wait_for(one_request(client, model, prompt, args.max_tokens), args.timeout)
                )
            except Exception as exc:  # noqa: BLE001 - a failed request is counted and reported, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(k) for k in range(clients)))
    finally:
        await client.close()
    wall = time.perf_counter() - start
    tokens = sum(s["tokens"] for s in samples)
    ttfts = [s["ttft"] * 1000 for s in samples if s["ttft"] is not None]
    itls = [gap * 1000 for s in samples for gap in s["itl"]]
    return {
        "clients": clients,
        "requests": len(samples),
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "token_count_source": "usage" if samples and all(s["from_usage"] for s in samples) else "chunks",
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p99_ms": percentile(ttfts, 99),
        "itl_p50_ms": percentile(itls, 50),
        "itl_p99_ms": percentile(itls, 99),
    }


def bench_server(name: str, cmd: list[str], port: int, env: dict, args) -> dict[int, dict]:
    results = {}
    with running(name, cmd, port, env, args.startup_timeout) as (base, model):
        warm = argparse.Namespace(**{**vars(args), "requests_per_client": 1})
        asyncio.run(run_level(base, model, 1, warm))  # warm-up: first-request costs are not measured
        for level in args.levels:
            results[level] = asyncio.run(run_level(base, model, level, args))
            r = results[level]
            print(
                f"[{name}] clients={level}: {r['tokens_per_s']:.1f} tok/s, {r['requests']} ok, "
                f"{r['errors']} errors, {r['wall_s']:.1f}s",
                file=sys.stderr,
            )
    return results


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def show(results: dict[str, dict[int, dict]], levels: list[int], console: Console) -> None:
    fmt = lambda v, spec=".1f": "-" if v is None else format(v, spec)  # noqa: E731
    names = list(results)
    table = Table(
        title="qcoder serve vs llama_cpp.server (streaming chat, temperature 0)",
        caption="ratio = qcoder / llama.cpp: above 1 is better for tok/s, below 1 is better for latencies",
    )
    table.add_column("clients", justify="right")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    if len(names) == 2:
        table.add_column("ratio", justify="right")
    for level in levels:
        for i, (label, key) in enumerate(METRICS):
            values = [results[n][level][key] for n in names]
            row = [str(level) if i == 0 else "", label, *(fmt(v) for v in values)]
            if len(names) == 2:
                row.append(fmt(ratio(*values), ".2f"))
            table.add_row(*row, end_section=i == len(METRICS) - 1)
        errs = [results[n][level]["errors"] for n in names]
        if any(errs):
            table.add_row("", "errors", *map(str, errs), *([""] if len(names) == 2 else []), end_section=True)
    console.print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="registry name (default: %(default)s)")
    ap.add_argument("--levels", default="1,4,8,16", help="concurrent clients per level (default: %(default)s)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both servers (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per request (default: %(default)s)")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--skip-llama-cpp", action="store_true")
    ap.add_argument("--qcoder-args", default="", help='extra args for qcoder serve, e.g. "--dtype bfloat16"')
    ap.add_argument("--json", metavar="PATH", help="write the numbers to this JSON file")
    ap.add_argument("--omp-wait-policy", default="spin", choices=["spin", "passive", "active"],
                    help="OpenMP idle threads, for both servers (default: a short spin, as qcoder runs)")
    args = ap.parse_args()
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not args.levels or min(args.levels) < 1 or args.requests_per_client < 1 or args.max_tokens < 1:
        ap.error("levels, --requests-per-client and --max-tokens must be positive")

    from qcoder.model.registry import resolve_model

    gguf = str(resolve_model(args.model, pull=False))
    from qcoder.threads import configure_openmp

    configure_openmp(args.omp_wait_policy)
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    results: dict[str, dict[int, dict]] = {}
    port = free_port()
    qcoder_cmd = [sys.executable, "-m", "qcoder", "serve", "--model", args.model]
    qcoder_cmd += ["--host", "127.0.0.1", "--port", str(port), *shlex.split(args.qcoder_args)]
    results["qcoder"] = bench_server("qcoder", qcoder_cmd, port, env, args)
    if not args.skip_llama_cpp:
        port = free_port()
        llama_cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1"]
        llama_cmd += ["--port", str(port), "--n_threads", threads, "--n_threads_batch", threads]
        llama_cmd += ["--interrupt_requests", "False"]  # queue concurrent requests instead of truncating streams
        results["llama.cpp"] = bench_server("llama.cpp", llama_cmd, port, env, args)

    show(results, args.levels, Console())
    if args.json:
        report = {"config": {k: v for k, v in vars(args).items() if k != "json"} | {"gguf": gguf}, "results": results}
        if "llama.cpp" in results:
            report["ratios"] = {
                level: {
                    key: ratio(results["qcoder"][level][key], results["llama.cpp"][level][key]) for _, key in METRICS
                }
                for level in args.levels
            }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
