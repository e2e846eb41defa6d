"""evalplus-style checking: the candidate's outputs are compared here, with expected outputs that never
enter the sandbox.

Per task, once: the canonical solution runs on the base and plus inputs in the sandbox, giving the
expected outputs and the ground-truth time per input. Per sample: the call driver runs the candidate
on the base inputs, each under max(1 s, 4 x ground-truth time), and reports the outputs; they are
compared here; only when all match does it go on to the plus inputs. "plus" passes only when "base"
passed too. The candidate's process sees the inputs and nothing else: no expected value, no verdict.

Comparison rules follow evalplus: exact equality first; a few tasks have their own oracle; floats
(or an `atol` from the dataset) are compared with atol and rtol=1e-7, types and lengths must match.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from qcoder.eval import calls, sandbox
from qcoder.eval.datasets import Task

MIN_TIME_LIMIT_S = 1.0
TIME_LIMIT_FACTOR = 4.0
REFERENCE_TIMEOUT_S = 120.0
MAX_CHECK_TIMEOUT_S = 300.0
SETS = ("base", "plus")
# evalplus's special oracles for MBPP+ tasks whose reference output is one of several right answers.
MBPP_SET_EQUAL = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
                  "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}
RTOL = 1e-7


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
        time_limits = {which: [max(MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR * t) for t in expected[which]["times"]]
                       for which in SETS}
        timeout = min(MAX_CHECK_TIMEOUT_S, sum(time_limits["base"]) + sum(time_limits["plus"]) + 5.0)
        failures: dict[str, str] = {}  # set -> what went wrong; a set that passed maps to ""

        def converse(line: calls.Line) -> None:
            for which in SETS:
                report = line.receive()
                if report is None or report.get("set") != which:
                    return
                failures[which] = _judge(task, report, getattr(task, f"{which}_input"), expected[which]["outputs"])
                if failures[which]:
                    line.reply("stop")
                    return
                line.reply("continue")

        job = self._job(task, code) | {"time_limits": time_limits}
        result = calls.run_driver(job, self._limits(timeout), converse)
        return _verdict(result, failures)

    def reference(self, task: Task) -> dict:
        with self._guard:
            lock = self._locks.setdefault(task.task_id, threading.Lock())
        with lock:
            if task.task_id not in self._references:
                self._references[task.task_id] = self._compute_reference(task)
            return self._references[task.task_id]

    def _compute_reference(self, task: Task) -> dict:
        reports: dict[str, dict] = {}

        def converse(line: calls.Line) -> None:
            for which in SETS:
                report = line.receive()
                if report is None or report.get("set") != which or report["failed"] is not None:
                    reports["failed"] = report
                    line.reply("stop")
                    return
                reports[which] = report
                line.reply("continue")

        job = self._job(task, task.canonical_solution) | {"time_limits": None}
        result = calls.run_driver(job, self._limits(REFERENCE_TIMEOUT_S), converse)
        if any(which not in reports for which in SETS):
            why = (reports.get("failed") or {}).get("failed") or f"{result.status}: {result.reason or _tail(result.stderr)}"
            raise CanonicalFailed(f"{task.task_id}: canonical solution failed ({why})")
        reference = {}
        for which in SETS:
            outputs = reports[which]["outputs"]
            if task.family == "mbpp" and task.entry_point in MBPP_NOT_NONE:
                outputs = [out is not None for out in outputs]
            reference[which] = {"outputs": outputs, "times": reports[which]["times"]}
        return reference

    def _job(self, task: Task, code: str) -> dict:
        return {"mode": "outputs", "code": code, "entry_point": task.entry_point,
                "sets": {"base": task.base_input, "plus": task.plus_input}}

    def _limits(self, timeout: float) -> sandbox.Limits:
        return sandbox.Limits(**{**self.limits.__dict__, "timeout_s": timeout, "cpu_s": int(timeout) + 1})


def _judge(task: Task, report: dict, inputs: list, expected: list) -> str:
    """"" when every output matches, else where and how it went wrong."""
    failed = report["failed"]
    if failed is not None:
        where = f"{report['set']} input {failed['index']}" if failed["index"] is not None else "loading the code"
        return f"{where}: {failed['error']}"
    outputs = report["outputs"]
    if not isinstance(outputs, list) or len(outputs) != len(expected):
        return f"{report['set']}: {len(outputs) if isinstance(outputs, list) else 'no'} outputs for {len(expected)} inputs"
    for index, (out, exp, args) in enumerate(zip(outputs, expected, inputs, strict=True)):
        try:
            ok = matches(out, exp, args, task)
        except Exception:  # noqa: BLE001 - an output the oracle cannot even compare is wrong
            ok = False
        if not ok:
            return f"{report['set']} input {index}: wrong output"
    return ""


def _verdict(result: sandbox.SandboxResult, failures: dict[str, str]) -> Verdict:
    base, plus = failures.get("base") == "", failures.get("plus") == ""
    if base and plus:
        return Verdict("pass", True, True)
    error = next((e for e in failures.values() if e), "")
    if error:
        status = "timeout" if ": timeout (" in error else "memory" if "MemoryError" in error else "fail"
        return Verdict(status, base, False, error)
    # The driver stopped reporting: the sandbox ended it (time, memory) or could not start it.
    status = result.status if result.status in ("timeout", "memory", "crash", "sandbox_error") else "fail"
    return Verdict(status, base, False, result.reason or _tail(result.stderr) or "no report from the call driver")


def is_floats(x) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def close(out, exp, atol: float) -> bool:
    """Element-wise |out - exp| <= atol + rtol * |exp|, like numpy.allclose on nested sequences."""
    if isinstance(exp, (list, tuple)):
        return isinstance(out, (list, tuple)) and len(out) == len(exp) and all(map(close, out, exp, [atol] * len(exp)))
    numbers = (int, float)
    if isinstance(exp, numbers) and isinstance(out, numbers) and not math.isnan(exp):
        return out == exp or abs(out - exp) <= atol + RTOL * abs(exp)
    return out == exp


def matches(out, exp, args, task: Task) -> bool:
    name, family, atol = task.entry_point, task.family, task.atol
    exact = out == exp
    if family == "mbpp":
        if name == "are_equivalent":
            exact = True
        elif name == "sum_div":
            exact = exact or out == 0
        elif name in MBPP_SET_EQUAL:
            exact = set(out) == set(exp)
        elif name in MBPP_NOT_NONE:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if family == "humaneval" and name == "find_zero":
        x, xs = float(out), args[0]  # float(): a huge int from the candidate must not cost huge powers here
        return abs(sum(c * x**i for i, c in enumerate(xs))) <= atol
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if exact or atol == 0:
        return bool(exact)
    if type(out) is not type(exp):
        return False
    return close(out, exp, atol)


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
