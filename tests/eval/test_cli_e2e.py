"""`qcoder eval` as a real subprocess against a scripted OpenAI-compatible server on 127.0.0.1."""

import json
import os
import subprocess
import sys

from qcoder.eval import datasets
from tests.fake_openai import FakeModel


def qcoder(*args, cwd=None):
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.run([sys.executable, "-m", "qcoder", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_humaneval_limit_3_against_fake_endpoint(tmp_path):
    tasks = datasets.load("humaneval").tasks[:3]

    def answer(user_message: str) -> str:
        task = next(t for t in tasks if t.prompt.strip() in user_message)
        if task.task_id == "HumanEval/2":
            return "```python\ndef truncate_number(number):\n    return number\n```"
        return f"Here is the solution.\n\n```python\n{task.canonical_solution}\n\nprint('demo')\n```\n"

    out = tmp_path / "run"
    with FakeModel(default=lambda body: {"content": answer(body["messages"][-1]["content"])}) as fake:
        proc = qcoder("eval", "humaneval", "--limit", "3", "--base-url", fake.base_url, "--model", "fake-model",
                      "--output", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert len(fake.requests) == 3 and fake.requests[0]["model"] == "fake-model"
    assert fake.requests[0]["messages"][0]["content"].startswith("Please provide a self-contained Python script")
    rows = {r["task_id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert {k: r["status"] for k, r in rows.items()} == {
        "HumanEval/0": "pass", "HumanEval/1": "pass", "HumanEval/2": "fail"}
    assert "print('demo')" not in rows["HumanEval/0"]["code"]
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["results"]["base"]["pass@1"] - 2 / 3) < 1e-9
    assert (out / "pass_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "66.7%" in proc.stdout

    # --resume with everything recorded asks nothing more of the endpoint
    with FakeModel(default=lambda body: {"content": answer(body["messages"][-1]["content"])}) as fake:
        again = qcoder("eval", "humaneval", "--limit", "3", "--base-url", fake.base_url, "--output", str(out),
                       "--resume", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert fake.requests == []


def test_user_errors_are_one_line(tmp_path):
    missing = qcoder("eval", "mbpp+", "--dataset", str(tmp_path / "nope.jsonl.gz"), "--base-url", "http://127.0.0.1:9")
    assert missing.returncode == 2 and missing.stderr.strip() == f"qcoder: error: dataset file not found: " \
                                                                   f"{tmp_path / 'nope.jsonl.gz'}"
    polyglot = qcoder("eval", "polyglot", "--base-url", "http://127.0.0.1:9")
    assert polyglot.returncode == 2 and "--dir" in polyglot.stderr and "Traceback" not in polyglot.stderr
