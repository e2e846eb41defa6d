"""Errors are not failures: a sample whose request or sandbox failed is an error, shown beside the scores,
the run exits non-zero (unless --allow-errors), and --resume tries it again."""

import json
import os
import subprocess
import sys
from pathlib import Path

from qcoder.eval import datasets, polyglot
from qcoder.eval.generation import ChatGenerator, Sampling
from qcoder.eval.runner import RunConfig, run_benchmark
from tests import fake_openai
from tests.fake_openai import FakeModel

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"


class RaisingClient:
    model = "raising"

    def __init__(self):
        self.calls = 0

    def chat(self, messages, tools=None, *, on_delta=None, **sampling):
        self.calls += 1
        raise IndexError("list index out of range")


def qcoder(*args):
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.run([sys.executable, "-m", "qcoder", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_runner_whose_client_raises_reports_errors_not_a_score(tmp_path):
    dataset = datasets.load("humaneval")
    config = RunConfig("humaneval", 1, tmp_path, exec_workers=2, progress=False)
    summary = run_benchmark(dataset, dataset.tasks[:3], ChatGenerator(RaisingClient(), Sampling()), config, {})
    assert summary["errors"] == 3 and summary["scored"] == 0
    assert summary["results"]["base"]["pass@1"] is None  # no 0%: nothing was scored
    assert summary["statuses"]["error"] == 3 and summary["statuses"]["fail"] == 0
    assert any("3 of 3 samples errored" in p and "IndexError" in p for p in summary["problems"])
    assert any("0 tokens" in p for p in summary["problems"])
    assert json.loads((tmp_path / "summary.json").read_text())["errors"] == 3


def test_cli_exits_non_zero_on_errors_and_resume_retries_them(tmp_path):
    tasks = datasets.load("humaneval").tasks[:2]

    def answer(user_message: str) -> str:
        task = next(t for t in tasks if t.prompt.strip() in user_message)
        return f"```python\n{task.prompt}{task.canonical_solution}```"

    out = tmp_path / "run"
    args = ("eval", "humaneval", "--limit", "2", "--model", "m", "--output", str(out), "--no-progress")
    with FakeModel(default=lambda body: {"status": 400}) as fake:
        failed = qcoder(*args, "--base-url", fake.base_url)
    assert failed.returncode == 1, failed.stderr
    assert "2 of 2 samples errored" in failed.stderr and "Traceback" not in failed.stderr
    assert "errors" in failed.stdout  # the table's column
    assert json.loads((out / "summary.json").read_text())["errors"] == 2

    with FakeModel(default=lambda body: {"content": answer(body["messages"][-1]["content"])}) as fake:
        again = qcoder(*args, "--base-url", fake.base_url, "--resume")
    assert again.returncode == 0, again.stderr
    assert len(fake.requests) == 2  # both errored samples were asked again
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["errors"], summary["results"]["base"]["pass@1"]) == (0, 1.0)


def test_zero_tokens_is_an_error_that_can_be_allowed(tmp_path, monkeypatch):
    task = datasets.load("humaneval").tasks[0]
    reply = f"```python\n{task.prompt}{task.canonical_solution}```"
    monkeypatch.setattr(fake_openai, "_usage", lambda body, reply: {"prompt_tokens": 10, "completion_tokens": 0,
                                                                     "total_tokens": 10})
    with FakeModel(default=lambda body: {"content": reply}) as fake:
        allowed = qcoder("eval", "humaneval", "--limit", "1", "--no-progress", "--output", str(tmp_path / "a"),
                         "--base-url", fake.base_url, "--allow-errors")
    assert allowed.returncode == 0, allowed.stderr
    assert "the completions total 0 tokens" in allowed.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["problems"]


def test_polyglot_request_failures_are_errors(tmp_path):
    client = RaisingClient()
    summary = polyglot.run(polyglot.discover(FIXTURES, ["python"]), client, tmp_path, sampling={}, workers=2,
                           progress=False)
    assert (summary["exercises"], summary["errors"]) == (0, 2)
    assert summary["pass_rate_1"] is None and summary["pass_rate_2"] is None
    assert summary["problems"] and summary["sandbox"]["readonly_root"]


def test_polyglot_cli_exits_non_zero_when_the_client_raises(tmp_path):
    with FakeModel(default=lambda body: {"status": 400}) as fake:
        proc = qcoder("eval", "polyglot", "--dir", str(FIXTURES), "--languages", "python", "--base-url",
                      fake.base_url, "--output", str(tmp_path / "p"), "--no-progress")
    assert proc.returncode == 1 and "2 of 2 samples errored" in proc.stderr, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "p" / "polyglot.jsonl").read_text().splitlines()]
    assert {r["status"] for r in rows} == {"error"}
