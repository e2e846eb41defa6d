"""evalplus-style checking: expected outputs come from running the canonical solution.

Per task, once: the canonical solution runs on the base and plus inputs in the sandbox, giving the
expected outputs and the ground-truth time per input. Per sample: the candidate runs on the base
inputs, then the plus inputs, each under max(1 s, 4 x ground-truth time); "plus" passes only when
"base" passed too (the child stops at the first failure).
"""

from __future__ import annotations

import json
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

from qcoder.eval import sandbox
from qcoder.eval.datasets import Task

CHILD = Path(__file__).with_name("plus_child.py").read_text()
MIN_TIME_LIMIT_S = 1.0
TIME_LIMIT_FACTOR = 4.0
REFERENCE_TIMEOUT_S = 120.0
MAX_CHECK_TIMEOUT_S = 300.0
REFERENCE_FILE_BYTES = 2 << 30


@dataclass
class Verdict:
    status: str  # the sandbox statuses; "pass" means every test the benchmark counts passed
    base: bool
    plus: bool | None  # None where the benchmark has no plus tests
    error: str = ""


class CanonicalFailed(Exception):
    """The canonical solution itself failed: a dataset or environment problem, not the sample's."""


class PlusChecker:
    """Checks samples of plus tasks; caches the reference outputs per task (thread-safe)."""

    def __init__(self, limits: sandbox.Limits | None = None):
        self.limits = limits or sandbox.Limits()
        self._references: dict[str, dict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def check(self, task: Task, code: str) -> Verdict:
        expected = self.reference(task)
        limits = {which: [max(MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR * t) for t in expected[which]["times"]]
                  for which in ("base", "plus")}
        timeout = min(MAX_CHECK_TIMEOUT_S, sum(limits["base"]) + sum(limits["plus"]) + 5.0)
        job = self._job(task, code) | {
            "expected": {w: expected[w]["outputs"] for w in ("base", "plus")}, "time_limits": limits}
        result = self._run("check", job, timeout, "verdict.json")
        if result.status != "pass" or "verdict.json" not in result.files:
            return Verdict(result.status if result.status != "pass" else "fail", False, False,
                           result.reason or _tail(result.stderr))
        verdict = json.loads(result.files["verdict.json"])
        failed = verdict["failed"]
        if failed is None:
            return Verdict("pass", True, True)
        status = "timeout" if failed["error"].startswith("timeout") else "fail"
        where = f"{failed['set']} input {failed['index']}" if failed["index"] is not None else "loading the code"
        return Verdict(status, verdict["base"], False, f"{where}: {failed['error']}")

    def reference(self, task: Task) -> dict:
        with self._guard:
            lock = self._locks.setdefault(task.task_id, threading.Lock())
        with lock:
            if task.task_id not in self._references:
                self._references[task.task_id] = self._compute_reference(task)
            return self._references[task.task_id]

    def _compute_reference(self, task: Task) -> dict:
        result = self._run("reference", self._job(task, task.canonical_solution), REFERENCE_TIMEOUT_S,
                           "reference.pkl")
        if result.status != "pass" or "reference.pkl" not in result.files:
            raise CanonicalFailed(f"{task.task_id}: canonical solution failed ({result.status}: "
                                  f"{result.reason or _tail(result.stderr)})")
        return pickle.loads(result.files["reference.pkl"])

    def _job(self, task: Task, code: str) -> dict:
        return {"code": code, "entry_point": task.entry_point, "family": task.family, "atol": task.atol,
                "base": task.base_input, "plus": task.plus_input}

    def _run(self, mode: str, job: dict, timeout: float, output: str) -> sandbox.SandboxResult:
        limits = sandbox.Limits(**{**self.limits.__dict__, "timeout_s": timeout, "cpu_s": int(timeout) + 1})
        if mode == "reference":  # some expected outputs are large (HumanEval/15: strings of millions of digits)
            limits.file_bytes = max(limits.file_bytes, REFERENCE_FILE_BYTES)
        return sandbox.run_python(CHILD, args=(mode,), files={"job.pkl": pickle.dumps(job)}, limits=limits,
                                  collect=(output,))


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
