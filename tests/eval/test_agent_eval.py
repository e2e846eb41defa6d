"""`qcoder eval agent` end to end: the real CLI, the real agent subprocess, a scripted model on loopback."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qcoder.cli import main
from tests.fake_openai import FakeModel, call

TEST_COMMAND = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"
BROKEN = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"


def make_task(root: Path, name: str, text: str) -> None:
    folder = root / name
    (folder / "tests").mkdir(parents=True)
    (folder / "calc.py").write_text(BROKEN)
    (folder / "tests" / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    (folder / "task.toml").write_text(f'task = "{text}"\ntest_command = "{TEST_COMMAND}"\n')
    (folder / "reference.patch").write_text("never shown to the agent\n")


def first_user_text(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


class Script:
    """The scripted model's moves, chosen by the task a request belongs to and by how far that run got."""

    def __init__(self):
        self.fail_gamma = True
        self.tasks_seen: list[str] = []

    def __call__(self, body: dict) -> dict:
        # the task text opens the agent's prompt and closes the repair path's ("The task: gamma: ...")
        task = re.search(r"(\w+): add\(2, 3\)", first_user_text(body)).group(1)
        step = sum(m["role"] == "assistant" for m in body["messages"])
        self.tasks_seen.append(task)
        if step > 0:
            return {"content": "Done."}
        if task == "beta":  # "solves" it by gutting the test
            return {"tool_calls": [call("write_file", path="tests/test_calc.py", content="def test_add():\n    pass\n")]}
        if task == "gamma" and self.fail_gamma:
            return {"status": 400}
        return {"tool_calls": [call("edit", path="calc.py", old_string="a - b", new_string="a + b")]}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No developer settings reach the agents the harness starts."""
    path = tmp_path / "qcoder-config"
    path.mkdir()
    # The scripted model plays the agent here; the repair path's one-token search would fix calc.py before it.
    (path / "settings.toml").write_text("[repair]\nsmall_fixes = 0\n")
    monkeypatch.setenv("QCODER_CONFIG", str(path))
    for key in [k for k in os.environ if k.startswith("OPENAI_")]:
        monkeypatch.delenv(key)
    return path


def eval_agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qcoder", "eval", "agent", "--no-progress", *args],
                          capture_output=True, text=True, timeout=300)


def read_rows(out: Path) -> dict[str, dict]:
    return {row["task"]: row for row in map(json.loads, (out / "agent.jsonl").read_text().splitlines())}


def test_solved_test_edit_and_error_then_resume(tmp_path, home):
    tasks = tmp_path / "tasks"
    make_task(tasks, "alpha", "alpha: add(2, 3) returns -1, it should add.")
    make_task(tasks, "beta", "beta: add(2, 3) returns -1, it should add.")
    make_task(tasks, "gamma", "gamma: add(2, 3) returns -1, it should add.")
    script = Script()
    model = FakeModel(default=script)
    out = tmp_path / "run"
    try:
        first = eval_agent("--dir", str(tasks), "--base-url", model.url, "--model", "fake", "--out", str(out))
        assert first.returncode == 1, first.stderr  # gamma errored
        assert "1 run(s) ended in error" in first.stderr
        rows = read_rows(out)
        assert rows["alpha"]["outcome"] == "solved"
        assert "+    return a + b" in rows["alpha"]["diff"]
        assert rows["alpha"]["agent_status"] == "success" and rows["alpha"]["tokens_known"]
        assert rows["alpha"]["completion_tokens"] > 0
        assert rows["beta"]["outcome"] == "unsolved"
        assert rows["beta"]["tests_passed"] is True  # the gutted test passes, but it was the test that changed
        assert rows["beta"]["tests_modified"] == ["tests/test_calc.py"]
        assert rows["gamma"]["outcome"] == "error" and "reported an error" in rows["gamma"]["reason"]
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["solved"], summary["unsolved"], summary["error"]) == (1, 1, 1)
        assert summary["solve_rate"] == pytest.approx(1 / 3) and summary["solve_rate_judged"] == 0.5
        assert summary["call_checks"] == {"valid": 2, "invalid": 0, "rescued": 0}  # alpha's edit, beta's write
        assert "tool calls: 2/2 valid (100.0%)" in first.stdout
        assert (out / "agent.png").stat().st_size > 0
        assert json.loads((out / "logs" / "alpha.0.stdout").read_text().splitlines()[-1])["type"] == "final"

        # --resume retries only the errored run
        script.fail_gamma = False
        script.tasks_seen.clear()
        again = eval_agent("--dir", str(tasks), "--base-url", model.url, "--model", "fake", "--out", str(out),
                           "--resume")
        assert again.returncode == 0, again.stderr
        assert set(script.tasks_seen) == {"gamma"}
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["solved"], summary["unsolved"], summary["error"]) == (2, 1, 0)
        assert "solved 2/3 runs" in again.stdout
    finally:
        model.close()
    # the agent never saw the reference patch or the task file
    prompts = " ".join(json.dumps(body["messages"]) for body in model.requests)
    assert "never shown to the agent" not in prompts


FIXER = """
import pathlib, sys
task = pathlib.Path(sys.argv[1]).read_text()
if task.startswith("crash"):
    raise SystemExit(3)
path = pathlib.Path("calc.py")
path.write_text(path.read_text().replace("a - b", "a + b"))
print("fixed it")
print('{"usage": {"prompt_tokens": 7, "completion_tokens": 5}}')  # an OpenAI-style usage line: tokens are counted
"""


def test_agent_cmd_solves_and_a_crash_is_an_error(tmp_path, home):
    tasks = tmp_path / "tasks"
    make_task(tasks, "fixable", "fix: add(2, 3) returns -1.")
    make_task(tasks, "crashing", "crash: add(2, 3) returns -1.")
    fixer = tmp_path / "fixer.py"
    fixer.write_text(FIXER)
    out = tmp_path / "run"
    proc = eval_agent("--dir", str(tasks), "--agent-cmd", f"python {fixer} {{task_file}}", "--out", str(out),
                      "--runs", "2")
    assert proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_task"]["fixable"]["solved"] == 2
    assert summary["per_task"]["crashing"]["error"] == 2
    assert summary["per_task"]["fixable"]["completion_tokens"] == 10 and summary["per_task"]["fixable"]["tokens_known"]
    assert summary["tokens_known"] is False  # the crashing runs said nothing
    assert "status 3" in read_rows(out)["crashing"]["reason"]

    allowed = eval_agent("--dir", str(tasks), "--agent-cmd", f"python {fixer} {{task_file}}",
                         "--out", str(tmp_path / "run2"), "--tasks", "crashing", "--allow-errors")
    assert allowed.returncode == 0, allowed.stderr


def test_an_unsolved_run_that_breaks_a_passing_test_is_counted_as_left_worse(tmp_path, home):
    tasks = tmp_path / "tasks"
    for name in ("worse", "same"):
        make_task(tasks, name, f"{name}: add(2, 3) returns -1.")
        (tasks / name / "calc.py").write_text(BROKEN + "\n\ndef mul(a, b):\n    return a * b\n")
        (tasks / name / "tests" / "test_mul.py").write_text("from calc import mul\n\n\ndef test_mul():\n"
                                                            "    assert mul(2, 3) == 6\n")
    breaker = tmp_path / "breaker.py"  # breaks mul in "worse", changes nothing that matters in "same"
    breaker.write_text("import pathlib, sys\n"
                       "if pathlib.Path(sys.argv[1]).read_text().startswith('worse'):\n"
                       "    path = pathlib.Path('calc.py')\n"
                       "    path.write_text(path.read_text().replace('a * b', 'a ** b'))\n")
    out = tmp_path / "run"
    proc = eval_agent("--dir", str(tasks), "--agent-cmd", f"python {breaker} {{task_file}}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert (rows["worse"]["passing_before"], rows["worse"]["passing_after"]) == (1, 0)
    assert (rows["same"]["passing_before"], rows["same"]["passing_after"]) == (1, 1)
    assert json.loads((out / "summary.json").read_text())["left_worse"] == 1
    assert "unsolved runs that left fewer tests passing than before the agent: 1/2" in proc.stdout


def test_an_agent_past_its_time_limit_is_killed_and_counts_as_error(tmp_path, home):
    tasks = tmp_path / "tasks"
    make_task(tasks, "slow", "slow: add(2, 3) returns -1.")
    out = tmp_path / "run"
    proc = eval_agent("--dir", str(tasks), "--agent-cmd", "sleep 120", "--timeout", "1", "--out", str(out))
    assert proc.returncode == 1
    row = read_rows(out)["slow"]
    assert row["outcome"] == "error" and "hard time limit" in row["reason"]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_swe_bench_instances_start_at_the_base_commit(tmp_path, home):
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(BROKEN + "\n\ndef sub(a, b):\n    return a - b\n")
    (repo / "tests" / "test_sub.py").write_text("from calc import sub\n\n\ndef test_sub():\n    assert sub(3, 2) == 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "calc.py").write_text(FIXED + "\n\ndef sub(a, b):\n    return a - b\n")  # the upstream fix, later
    git(repo, "commit", "-qam", "fix")
    test_patch = textwrap.dedent("""\
        diff --git a/tests/test_add.py b/tests/test_add.py
        new file mode 100644
        --- /dev/null
        +++ b/tests/test_add.py
        @@ -0,0 +1,5 @@
        +from calc import add
        +
        +
        +def test_add():
        +    assert add(2, 3) == 5
        """)
    instance = {"repo": "repo", "base_commit": base, "test_patch": test_patch,
                "FAIL_TO_PASS": json.dumps(["tests/test_add.py::test_add"]), "PASS_TO_PASS": ["tests/test_sub.py"]}
    lines = [{**instance, "instance_id": "fix-it", "problem_statement": "fix: add subtracts"},
             {**instance, "instance_id": "leave-it", "problem_statement": "noop: add subtracts"}]
    instances = tmp_path / "instances.jsonl"
    instances.write_text("".join(json.dumps(line) + "\n" for line in lines))
    agent = f"{sys.executable} -c \"import pathlib, sys; t = pathlib.Path(sys.argv[1]).read_text(); " \
            "p = pathlib.Path('calc.py'); t.startswith('fix') and p.write_text(p.read_text().replace('a - b', " \
            "'a + b', 1))\" {task_file}"
    out = tmp_path / "run"
    proc = eval_agent("--instances", str(instances), "--agent-cmd", agent, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert rows["fix-it"]["outcome"] == "solved", rows["fix-it"]["test_output"]
    assert rows["leave-it"]["outcome"] == "unsolved"  # HEAD has the fix: the workspace must not
    assert "test_add" in rows["leave-it"]["test_output"]


@pytest.mark.parametrize("argv,message", [
    (["eval", "agent"], "either --dir TASKS"),
    (["eval", "agent", "--dir", "nowhere"], "task directory not found"),
    (["eval", "agent", "--dir", ".", "--agent-cmd", "x", "--model", "m"], "--agent-cmd starts its own agent"),
])
def test_bad_arguments_give_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qcoder: error: ") and message in err and err.count("\n") == 1
