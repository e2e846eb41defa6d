"""A benchmark run: generate, sanitize, check in the sandbox, one JSONL row per sample, then summarize.

Generation (threads or engine batches) feeds an execution pool; rows are appended as verdicts come
in, so an interrupted run loses nothing and `resume=True` skips the samples already scored (errored
ones are tried again). A sample whose request, sandbox or checking failed for reasons outside the
model's answer is an "error", never a "fail": it is left out of pass@k and counted beside it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from qcoder.eval import report, sandbox
from qcoder.eval.checks import Checker
from qcoder.eval.datasets import Dataset, Task
from qcoder.eval.generation import Completion, Job
from qcoder.eval.plus_tests import CanonicalFailed, Verdict
from qcoder.eval.sanitize import sanitize

SAMPLES_FILE = "samples.jsonl"


@dataclass
class RunConfig:
    bench: str
    n: int
    output: Path
    resume: bool = False
    exec_workers: int = max(1, os.cpu_count() or 1)
    progress: bool = True
    isolate: bool = True  # False: --no-sandbox


def run_benchmark(dataset: Dataset, tasks: list[Task], generator, config: RunConfig, settings: dict) -> dict:
    samples_path = report.open_rows_file(config.output, SAMPLES_FILE, config.resume)
    done = {key for key, row in report.read_rows(samples_path, ("task_id", "sample")).items() if not report.is_error(row)}
    jobs = [Job(t, i) for t in tasks for i in range(config.n) if (t.task_id, i) not in done]
    checker = Checker(config.bench, isolate=config.isolate)
    writer = _RowWriter(samples_path)
    tracker = report.ProgressTracker(len(tasks) * config.n, len(tasks) * config.n - len(jobs), config.progress)
    with tracker, ThreadPoolExecutor(config.exec_workers, thread_name_prefix="eval-exec") as pool:
        pending: list[Future] = []
        for job, completion in generator.generate(jobs):
            tracker.generated(completion.completion_tokens)
            future = pool.submit(_evaluate, checker, job, completion, generator.code_prefix)
            future.add_done_callback(lambda f: tracker.checked(writer.write(f.result())))
            pending.append(future)
        for future in pending:
            future.result()  # re-raise anything unexpected from the pool
    rows = report.read_rows(samples_path, ("task_id", "sample"))
    summary = report.summarize(config.bench, tasks, rows, config.n, dataset, settings)
    summary["sandbox"] = asdict(sandbox.probe(sandbox.Limits(timeout_s=30, isolate=config.isolate)))
    report.write_all(summary, config.output)
    return summary


def sample_row(job: Job, completion: Completion, code: str, verdict: Verdict, exec_seconds: float) -> dict:
    return {
        "task_id": job.task.task_id, "sample": job.sample, "prompt": completion.prompt,
        "completion": completion.text, "code": code, "status": verdict.status, "base": verdict.base,
        "plus": verdict.plus, "error": verdict.error, "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
        "gen_seconds": round(completion.seconds, 3), "exec_seconds": round(exec_seconds, 3),
    }


def _evaluate(checker: Checker, job: Job, completion: Completion, code_prefix: str) -> dict:
    start = time.monotonic()
    if completion.error:
        return sample_row(job, completion, "", Verdict("error", False, None, f"request failed: {completion.error}"),
                          0.0)
    code = sanitize(code_prefix + completion.text, job.task.entry_point, job.task.prompt)
    try:
        verdict = checker.check(job.task, code)
    except CanonicalFailed as exc:
        verdict = Verdict("error", False, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a harness failure is this sample's error, not its score
        verdict = Verdict("error", False, None, f"harness error: {type(exc).__name__}: {exc}")
    if checker.plus is None:
        verdict.plus = None
    return sample_row(job, completion, code, verdict, time.monotonic() - start)


class _RowWriter:
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, row: dict) -> dict:
        with self.lock, self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row
