"""Real datasets through the real pipeline: canonical solutions pass, empty bodies fail.

HumanEval: all 164 canonical solutions (as a model would answer them: in a fenced block) go through
generation -> sanitizer -> sandbox with the worker pool; so do 164 `pass` bodies.
HumanEval+ / MBPP+: canonical solutions pass the base and plus tests of a sample of tasks.
"""

import json

import pytest

from qcoder.eval import datasets
from qcoder.eval.generation import Completion
from qcoder.eval.plus_tests import PlusChecker
from qcoder.eval.runner import RunConfig, run_benchmark
from tests.conftest import needs_shared_data

pytestmark = needs_shared_data


class CannedGenerator:
    code_prefix = ""
    model = "canned"

    def __init__(self, answer):
        self.answer = answer

    def generate(self, jobs):
        for job in jobs:
            yield job, Completion("prompt", self.answer(job.task), 0, 7, "stop", 0.0)


def run_humaneval(tmp_path, answer) -> tuple[dict, list[dict]]:
    dataset = datasets.load("humaneval")
    config = RunConfig("humaneval", 1, tmp_path, exec_workers=4, progress=False)
    summary = run_benchmark(dataset, dataset.tasks, CannedGenerator(answer), config, {"model": "canned"})
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    return summary, rows


def test_all_canonical_humaneval_solutions_pass(tmp_path):
    summary, rows = run_humaneval(
        tmp_path, lambda t: f"Here you go:\n```python\n{t.canonical_solution}\n```\nThis works because ...")
    failed = [(r["task_id"], r["status"], r["error"]) for r in rows if r["status"] != "pass"]
    assert failed == []
    assert len(rows) == 164 and summary["results"]["base"]["pass@1"] == 1.0
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "pass_at_k.png").is_file()


def test_all_empty_humaneval_bodies_fail(tmp_path):
    summary, rows = run_humaneval(tmp_path, lambda t: "    pass\n")
    passed = [r["task_id"] for r in rows if r["status"] == "pass"]
    assert passed == []
    assert len(rows) == 164 and summary["results"]["base"]["pass@1"] == 0.0


@pytest.mark.parametrize("bench", ["humaneval+", "mbpp+"])
def test_canonical_solutions_pass_plus_tests(bench):
    dataset = datasets.load(bench)
    assert len(dataset.tasks) == datasets.RELEASES[bench].tasks
    checker = PlusChecker()
    sample = dataset.tasks[::len(dataset.tasks) // 10][:10]
    for task in sample:
        verdict = checker.check(task, task.canonical_solution)
        assert (verdict.status, verdict.base, verdict.plus) == ("pass", True, True), (task.task_id, verdict)


def test_plus_needs_base_and_catches_plus_only_bugs():
    task = next(t for t in datasets.load("humaneval+").tasks if t.task_id == "HumanEval/2")
    # right on the base inputs (3.5, 1.33, 123.456), wrong on large numbers
    wrong_on_plus = task.prompt + "    return number - int(number) if number < 500 else 0.0\n"
    verdict = PlusChecker().check(task, wrong_on_plus)
    assert (verdict.status, verdict.base, verdict.plus) == ("fail", True, False)
    assert verdict.error.startswith("plus input")


def test_mbpp_tasks_that_need_their_input_types_restored():
    tasks = {t.task_id: t for t in datasets.load("mbpp+").tasks}
    checker = PlusChecker()
    for task_id in ("Mbpp/106", "Mbpp/124", "Mbpp/252", "Mbpp/580", "Mbpp/720"):
        verdict = checker.check(tasks[task_id], tasks[task_id].canonical_solution)
        assert verdict.status == "pass", (task_id, verdict)
