"""CLI: `qcoder eval BENCH` (humaneval, humaneval+, mbpp+, polyglot, agent). Heavy imports happen in the handler."""

from __future__ import annotations

import os
import time
from pathlib import Path

from qcoder.errors import QcoderError

BENCHES = ("humaneval", "humaneval+", "mbpp+", "polyglot", "agent")


def register(subparsers) -> None:
    from qcoder.engine.commands import add_cpu_options

    p = subparsers.add_parser(
        "eval", help="run execution-based benchmarks (HumanEval, HumanEval+, MBPP+, polyglot, agent tasks)",
        description="Generate solutions with a model, run them in a sandbox and report pass@k. Without --base-url "
        "the model runs in-process (evalplus instruct protocol with the response prefix); with --base-url any "
        "OpenAI-compatible endpoint is used with plain chat. `agent` runs the coding agent headless on task "
        "folders (--dir) or SWE-bench-style instances (--instances) and judges each run by the tests.")
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
    p.add_argument("--workers", type=int, help="requests in flight against an endpoint (default 4; agent: agent "
                   "runs at once, default 1)")
    p.add_argument("--exec-workers", type=int, default=max(1, os.cpu_count() or 1),
                   help="sandboxed programs run at once (default: CPU count)")
    p.add_argument("--output", "--out", help="run directory (default runs/<bench>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output, skipping recorded samples")
    p.add_argument("--dataset", help="dataset file (default: the bundled/shared copy)")
    p.add_argument("--dir", help="polyglot: the polyglot-benchmark checkout (<lang>/exercises/practice/...); "
                   "agent: a folder of task folders (e.g. benchmarks/agent_tasks)")
    p.add_argument("--languages", help="polyglot: comma-separated languages (default: all with a toolchain)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run samples even where the sandbox cannot isolate them (no network/file-system isolation; "
                   "stated in the summary). Without it, a machine that cannot isolate refuses to run samples")
    p.add_argument("--allow-errors", action="store_true",
                   help="exit 0 even when samples or agent runs errored (request failed, sandbox could not start)")
    agent = p.add_argument_group("agent")
    agent.add_argument("--instances", help="SWE-bench-style instance JSONL (local repo path + base_commit)")
    agent.add_argument("--runs", type=int, default=1, help="runs per task (default 1)")
    agent.add_argument("--agent-cmd", help="drive another agent CLI instead of qcoder: a shell command run in the "
                       "task's workspace, with {task} (the task text, quoted), {task_file} or {workspace} filled in")
    agent.add_argument("--timeout", type=float, help="seconds per agent run (default 900; a task.toml may set its own)")
    agent.add_argument("--max-turns", type=int, help="qcoder's model calls per run (default: the agent's own)")
    agent.add_argument("--keep", action="store_true", help="keep each run's workspace (paths in agent.jsonl)")
    agent.add_argument("--check", action="store_true", help="check the task folders instead of running an agent: "
                       "tests fail as shipped, pass after reference.patch, which leaves the tests alone")
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
    if args.bench == "agent":
        return _run_agent(args, output, tasks)
    args.workers = args.workers or 4
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
    config = RunConfig(args.bench, args.n, output, args.resume, args.exec_workers, not args.no_progress,
                       isolate=not args.no_sandbox)
    summary = run_benchmark(dataset, selected, generator, config, settings)
    print(f"results in {output}/ (samples.jsonl, summary.json, pass_at_k.png)")
    return _exit_status(summary, args)


def _exit_status(summary: dict, args) -> int:
    """1 when the run's numbers rest on errored samples (unless --allow-errors), else 0."""
    import sys

    for problem in summary["problems"]:
        print(f"qcoder: eval: {problem}", file=sys.stderr)
    if summary["problems"] and not args.allow_errors:
        print("qcoder: eval: not a valid score (fix the errors and --resume, or pass --allow-errors)", file=sys.stderr)
        return 1
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
    return EngineGenerator(qcoder.LLM(model, quant=args.quant, threads=args.threads, speculative=args.speculative), model, sampling)


def _run_polyglot(args, output: Path, names: list[str] | None, temperature: float) -> int:
    if not args.dir:
        raise QcoderError("polyglot needs --dir PATH (a checkout of the polyglot-benchmark exercises)")
    from qcoder.client import make_client
    from qcoder.eval import polyglot

    client = make_client(model=args.model, base_url=args.base_url, api_key=args.api_key)
    languages = [lang for lang in (args.languages or "").split(",") if lang] or None
    exercises = polyglot.discover(Path(args.dir), languages, names, args.limit)
    sampling = {"temperature": temperature, "max_tokens": args.max_tokens}
    summary = polyglot.run(exercises, client, output, sampling=sampling, workers=args.workers, resume=args.resume,
                           isolate=not args.no_sandbox)
    print(f"results in {output}/ (polyglot.jsonl, summary.json, polyglot.png)")
    return _exit_status(summary, args)


def _run_agent(args, output: Path, names: list[str] | None) -> int:
    import sys

    from qcoder.eval import agent, agent_tasks

    if bool(args.dir) == bool(args.instances):
        raise QcoderError("agent needs either --dir TASKS (task folders) or --instances FILE.jsonl")
    if args.agent_cmd and (args.model or args.base_url):
        raise QcoderError("--agent-cmd starts its own agent with its own model: drop --model/--base-url")
    if args.runs < 1 or (args.timeout is not None and args.timeout <= 0):
        raise QcoderError("--runs must be at least 1 and --timeout positive")
    if args.resume and not args.output:
        raise QcoderError("--resume needs --out DIR (the run to continue)")
    source = Path(args.dir or args.instances).resolve()
    if args.dir:
        tasks = agent_tasks.load_dir(source, names, args.limit)
    else:
        tasks = agent_tasks.load_instances(source, names, args.limit)
    if args.check:
        return _check_tasks(tasks, args.workers or 4)
    from qcoder.model.registry import AGENT_MODEL

    # qcoder with neither picks the agent's default model: name it, so the report says which model ran
    remote = args.base_url or os.environ.get("OPENAI_BASE_URL")  # the agent reads the variable too
    model = args.model or (None if remote or args.agent_cmd else AGENT_MODEL)
    settings = agent.AgentSettings(model=model, base_url=args.base_url, api_key=args.api_key,
                                   agent_cmd=args.agent_cmd, max_turns=args.max_turns,
                                   timeout_s=args.timeout or agent_tasks.DEFAULT_TIMEOUT_S)
    plan = agent.RunPlan(output, args.runs, args.workers or 1, args.resume, not args.no_progress, args.keep)
    summary = agent.run(tasks, settings, plan, str(source))
    print(f"results in {output}/ (agent.jsonl, summary.json, agent.png, logs/)")
    if summary["error"] and not args.allow_errors:
        print(f"qcoder: {summary['error']} run(s) ended in error (see agent.jsonl); --allow-errors accepts that, "
              "--resume retries them", file=sys.stderr)
        return 1
    return 0


def _check_tasks(tasks, workers: int) -> int:
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from qcoder.eval.agent_tasks import check_task

    with tempfile.TemporaryDirectory(prefix="qcoder-check-") as scratch, ThreadPoolExecutor(workers) as pool:
        problems = [p for found in pool.map(lambda t: check_task(t, Path(scratch)), tasks) for p in found]
    for problem in problems:
        print(problem)
    print(f"{len(tasks) - len({p.split(':', 1)[0] for p in problems})}/{len(tasks)} tasks sound")
    return 1 if problems else 0
