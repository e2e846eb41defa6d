"""CLI: `qcoder eval BENCH` (humaneval, humaneval+, mbpp+, polyglot). Heavy imports happen in the handler."""

from __future__ import annotations

import os
import time
from pathlib import Path

from qcoder.errors import QcoderError

BENCHES = ("humaneval", "humaneval+", "mbpp+", "polyglot")


def register(subparsers) -> None:
    from qcoder.engine.commands import add_cpu_options

    p = subparsers.add_parser(
        "eval", help="run execution-based benchmarks (HumanEval, HumanEval+, MBPP+, polyglot)",
        description="Generate solutions with a model, run them in a sandbox and report pass@k. Without --base-url "
        "the model runs in-process (evalplus instruct protocol with the response prefix); with --base-url any "
        "OpenAI-compatible endpoint is used with plain chat.")
    p.add_argument("bench", choices=BENCHES, metavar="BENCH", help=f"one of: {', '.join(BENCHES)}")
    p.add_argument("--model", help="model name or path (in-process), or the model name sent to --base-url")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", help="API key for --base-url (default: $OPENAI_API_KEY)")
    add_cpu_options(p)
    p.add_argument("--n", type=int, default=1, help="samples per task (default 1)")
    p.add_argument("--temperature", type=float, help="default 0 (greedy) for --n 1, else 0.2")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling when temperature > 0")
    p.add_argument("--max-tokens", type=int, default=1024, help="completion budget per sample (default 1024)")
    p.add_argument("--limit", type=int, help="only the first N tasks")
    p.add_argument("--tasks", help="comma-separated task ids (e.g. HumanEval/0,HumanEval/5) or polyglot names")
    p.add_argument("--workers", type=int, default=4, help="requests in flight against an endpoint (default 4)")
    p.add_argument("--exec-workers", type=int, default=max(1, os.cpu_count() or 1),
                   help="sandboxed programs run at once (default: CPU count)")
    p.add_argument("--output", help="run directory (default runs/<bench>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output, skipping recorded samples")
    p.add_argument("--dataset", help="dataset file (default: the bundled/shared copy)")
    p.add_argument("--dir", help="polyglot: the polyglot-benchmark checkout (<lang>/exercises/practice/...)")
    p.add_argument("--languages", help="polyglot: comma-separated languages (default: all with a toolchain)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.n < 1:
        raise QcoderError("--n must be at least 1")
    if args.resume and not args.output:
        raise QcoderError("--resume needs --output DIR (the run to continue)")
    temperature = args.temperature if args.temperature is not None else (0.0 if args.n == 1 else 0.2)
    if args.n > 1 and temperature == 0:
        raise QcoderError("--n > 1 needs --temperature > 0 (greedy samples are all the same)")
    output = Path(args.output or f"runs/{args.bench.replace('+', 'plus')}-{time.strftime('%Y%m%d-%H%M%S')}")
    tasks = [t for t in (args.tasks or "").split(",") if t] or None
    if args.bench == "polyglot":
        return _run_polyglot(args, output, tasks, temperature)

    from qcoder.eval import datasets
    from qcoder.eval.generation import Sampling
    from qcoder.eval.runner import RunConfig, run_benchmark

    dataset = datasets.load(args.bench, args.dataset)
    selected = datasets.select(dataset.tasks, tasks, args.limit)
    sampling = Sampling(temperature=temperature, top_p=args.top_p, max_tokens=args.max_tokens)
    generator = _generator(args, sampling)
    settings = {"model": generator.model, "base_url": args.base_url, "protocol": type(generator).__name__,
                "quant": None if args.base_url else args.quant, "temperature": temperature, "top_p": args.top_p, "max_tokens": args.max_tokens}
    config = RunConfig(args.bench, args.n, output, args.resume, args.exec_workers, not args.no_progress)
    run_benchmark(dataset, selected, generator, config, settings)
    print(f"results in {output}/ (samples.jsonl, summary.json, pass_at_k.png)")
    return 0


def _generator(args, sampling):
    from qcoder.eval.generation import ChatGenerator, EngineGenerator

    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
    if base_url:
        from qcoder.client import make_client

        client = make_client(model=args.model, base_url=base_url, api_key=args.api_key)
        return ChatGenerator(client, sampling, concurrency=args.workers)
    import qcoder
    from qcoder.model.registry import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    return EngineGenerator(qcoder.LLM(model, quant=args.quant, threads=args.threads), model, sampling)


def _run_polyglot(args, output: Path, names: list[str] | None, temperature: float) -> int:
    if not args.dir:
        raise QcoderError("polyglot needs --dir PATH (a checkout of the polyglot-benchmark exercises)")
    from qcoder.client import make_client
    from qcoder.eval import polyglot

    client = make_client(model=args.model, base_url=args.base_url, api_key=args.api_key)
    languages = [lang for lang in (args.languages or "").split(",") if lang] or None
    exercises = polyglot.discover(Path(args.dir), languages, names, args.limit)
    sampling = {"temperature": temperature, "max_tokens": args.max_tokens}
    polyglot.run(exercises, client, output, sampling=sampling, workers=args.workers, resume=args.resume)
    print(f"results in {output}/ (polyglot.jsonl, summary.json, polyglot.png)")
    return 0
