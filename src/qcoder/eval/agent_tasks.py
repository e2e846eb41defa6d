"""Agent benchmark tasks: where they come from, the fresh workspace each run gets, and how a run is judged.

Two sources, one `AgentTask`:

- a task folder (`load_dir`): the project files, a failing test suite, and
    task.toml         task = "what a user would type"; test_command = "python -m pytest -q"; optional
                      timeout (seconds) and protected (glob patterns of files the agent must leave alone)
    reference.patch   a known fix in `git diff` form; only `check_task` reads it
  task.toml and reference.patch are never copied into the workspace.
- SWE-bench-style instances (`load_instances`), one JSON object per line: instance_id, repo (a local git
  repository; relative paths start at the JSONL file), base_commit, problem_statement, FAIL_TO_PASS and
  PASS_TO_PASS (pytest node ids, as lists or JSON-encoded lists), optional test_patch (applied after the
  agent ran, before the tests, as SWE-bench does).

A run is solved when the test command passes and no protected file (the tests, conftest.py, pytest
configuration) was added, changed or removed: an agent that edits the tests does not get the credit.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from qcoder.errors import QcoderError

TASK_FILE = "task.toml"
REFERENCE_PATCH = "reference.patch"
# files whose change voids a solve: the tests and what steers pytest
DEFAULT_PROTECTED = ("tests/*", "test/*", "test_*.py", "*/test_*.py", "*_test.py", "conftest.py", "*/conftest.py",
                     "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml")
# what a run leaves behind that is no part of the project
SCRATCH = (".git", ".qcoder", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
DEFAULT_TIMEOUT_S = 900.0
OUTPUT_TAIL = 4000


@dataclass(frozen=True)
class AgentTask:
    name: str
    text: str  # what the user types
    source: Path  # the task folder, or the repository of an instance
    test_command: str  # run by the shell in the workspace
    protected: tuple[str, ...] = DEFAULT_PROTECTED
    timeout_s: float | None = None
    base_commit: str | None = None  # instances: the commit the workspace starts from
    test_patch: str = ""  # instances: the tests, applied after the agent ran


@dataclass
class Outcome:
    """What happened to one process: exit code (None: killed at the time limit), output, wall time."""

    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    def tail(self, chars: int = OUTPUT_TAIL) -> str:
        return (self.stdout + self.stderr)[-chars:]

    @property
    def tests_passing(self) -> int | None:
        """How many tests passed, from pytest's last summary line (`2 failed, 3 passed in 0.1s`; a collection
        error: 0); None for output without one."""
        lines = [line for line in (self.stdout + self.stderr).splitlines()
                 if re.search(r"\b(passed|failed|errors?|no tests ran)\b.* in [\d.]+s", line)]
        if not lines:
            return None
        found = re.search(r"(\d+) passed", lines[-1])
        return int(found.group(1)) if found else 0


# ---- loading -------------------------------------------------------------------------------------------------

def load_dir(root: Path, names: list[str] | None = None, limit: int | None = None) -> list[AgentTask]:
    if not root.is_dir():
        raise QcoderError(f"task directory not found: {root}")
    folders = sorted(p for p in root.iterdir() if (p / TASK_FILE).is_file())
    if not folders:
        raise QcoderError(f"{root} has no task folders (each needs a {TASK_FILE})")
    if names:
        unknown = sorted(set(names) - {p.name for p in folders})
        if unknown:
            raise QcoderError(f"no such task under {root}: {', '.join(unknown)}")
        folders = [p for p in folders if p.name in names]
    return [_read_task_folder(p.resolve()) for p in folders[:limit]]


def _read_task_folder(folder: Path) -> AgentTask:
    where = folder / TASK_FILE
    try:
        spec = tomllib.loads(where.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QcoderError(f"{where}: not valid TOML ({exc})") from exc
    for key in ("task", "test_command"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise QcoderError(f"{where}: `{key}` must be a non-empty string")
    protected = spec.get("protected", DEFAULT_PROTECTED)
    if not (isinstance(protected, list | tuple) and all(isinstance(p, str) for p in protected)):
        raise QcoderError(f"{where}: `protected` must be a list of glob patterns")
    timeout = spec.get("timeout")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise QcoderError(f"{where}: `timeout` must be a positive number of seconds")
    return AgentTask(folder.name, spec["task"].strip(), folder, spec["test_command"], tuple(protected), timeout)


def load_instances(path: Path, names: list[str] | None = None, limit: int | None = None) -> list[AgentTask]:
    if not path.is_file():
        raise QcoderError(f"instances file not found: {path}")
    tasks = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            tasks.append(_read_instance(json.loads(line), path.parent))
        except (ValueError, KeyError, TypeError) as exc:
            raise QcoderError(f"{path}:{number}: not a usable instance ({type(exc).__name__}: {exc})") from exc
    if names:
        tasks = [t for t in tasks if t.name in names]
    if not tasks:
        raise QcoderError(f"no instances selected from {path}")
    return tasks[:limit]


def _read_instance(obj: dict, base: Path) -> AgentTask:
    def test_ids(key: str) -> list[str]:
        value = obj.get(key) or []
        value = json.loads(value) if isinstance(value, str) else value  # SWE-bench stores them JSON-encoded
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{key} must be a list of test ids")
        return value

    repo = (base / str(obj.get("repo_path") or obj["repo"])).resolve()
    if not (repo / ".git").exists():
        raise ValueError(f"repo {repo} is not a local git repository")
    ids = test_ids("FAIL_TO_PASS") + test_ids("PASS_TO_PASS")
    if not ids:
        raise ValueError("FAIL_TO_PASS and PASS_TO_PASS are both empty: nothing would be checked")
    command = shlex.join(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids])
    test_files = tuple(dict.fromkeys(i.split("::", 1)[0] for i in ids))
    return AgentTask(str(obj["instance_id"]), str(obj["problem_statement"]).strip(), repo, command,
                     DEFAULT_PROTECTED + test_files, obj.get("timeout"), str(obj["base_commit"]),
                     str(obj.get("test_patch") or ""))


# ---- the workspace -------------------------------------------------------------------------------------------

def prepare(task: AgentTask, workdir: Path) -> str:
    """A fresh copy of the task's project in `workdir` (which must not exist yet), committed to git so the
    agent's changes can be shown as a diff. Returns the commit the workspace starts from."""
    if task.base_commit is None:
        shutil.copytree(task.source, workdir, ignore=_ignore_patterns(task.source))
        git(workdir, "init", "-q")
        git(workdir, "add", "-A")
        git(workdir, "commit", "-q", "--no-verify", "-m", "task")
    else:
        git(workdir.parent, "clone", "-q", "--no-checkout", str(task.source), str(workdir))
        git(workdir, "checkout", "-q", "--detach", task.base_commit)
    (workdir / ".git" / "info").mkdir(exist_ok=True)
    (workdir / ".git" / "info" / "exclude").write_text("".join(f"{name}/\n" for name in SCRATCH[1:]))
    return git(workdir, "rev-parse", "HEAD").strip()


def _ignore_patterns(source: Path):
    def ignore(directory: str, names: list[str]) -> set[str]:
        hidden = {TASK_FILE, REFERENCE_PATCH} if Path(directory) == source else set()
        return {n for n in names if n in SCRATCH or n in hidden}

    return ignore


def diff(workdir: Path, base: str) -> str:
    """Everything the agent changed since `base`, new files included (and commits it made)."""
    git(workdir, "add", "-A")
    return git(workdir, "diff", "--cached", "--no-color", base)


def protected_files(task: AgentTask, workdir: Path) -> dict[str, str]:
    """sha256 of every protected file in the workspace, by relative path."""
    found = {}
    for path in _project_files(workdir):
        rel = path.relative_to(workdir).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in task.protected):
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def changed_between(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def _project_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SCRATCH]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def run_tests_in_copy(task: AgentTask, workdir: Path, scratch: Path, timeout_s: float = 300.0) -> Outcome:
    """The task's tests on a throw-away copy of the workspace (without its git data), which stays as it is."""
    copy = scratch / "tests-copy"
    shutil.copytree(workdir, copy, symlinks=True, ignore=shutil.ignore_patterns(*SCRATCH))
    try:
        return run_tests(task, copy, timeout_s)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def run_tests(task: AgentTask, workdir: Path, timeout_s: float = 300.0) -> Outcome:
    """The task's test command in the workspace (after the instance's test patch, if it has one)."""
    if task.test_patch:
        patch = run_process(["git", "apply", "--whitespace=nowarn", "-"], workdir, 60, stdin=task.test_patch)
        if patch.exit_code != 0:
            return Outcome(patch.exit_code, "", f"the test patch does not apply: {patch.stderr}", patch.seconds)
    return run_process(task.test_command, workdir, timeout_s, shell=True)


# ---- processes -----------------------------------------------------------------------------------------------

def tool_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment with this interpreter's bin directory first on PATH, so `python` and `pytest` in a test
    command (or typed by an agent) are the ones qcoder runs with."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run_process(command, cwd: Path, timeout_s: float, *, shell: bool = False, env: dict | None = None,
                stdin: str | None = None) -> Outcome:
    """Run a command in its own process group; at the time limit the whole group is killed."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=cwd, shell=shell, env=env or tool_environment(), text=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(stdin, timeout=timeout_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        code = None
    finally:
        _kill_group(proc)  # whatever the command left running in the background goes too
    return Outcome(code, stdout, stderr, round(time.monotonic() - start, 3))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "qcoder-eval", "GIT_AUTHOR_EMAIL": "eval@localhost", "GIT_COMMITTER_NAME": "qcoder-eval",
           "GIT_COMMITTER_EMAIL": "eval@localhost", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        raise HarnessError(f"git {' '.join(args[:2])} failed in {cwd}: {proc.stderr.strip()[:500]}")
    return proc.stdout


class HarnessError(RuntimeError):
    """The harness could not set up or judge a run (not the agent's fault): the run counts as an error."""


# ---- checking a task folder ----------------------------------------------------------------------------------

def check_task(task: AgentTask, scratch: Path) -> list[str]:
    """Problems with a task folder: its tests must fail as shipped, and pass after reference.patch, which must
    leave the protected files alone. An empty list means the task is sound."""
    patch = task.source / REFERENCE_PATCH
    if not patch.is_file():
        return [f"{task.name}: no {REFERENCE_PATCH}"]
    workdir = scratch / task.name
    prepare(task, workdir)
    problems = []
    before = run_tests(task, workdir, 120)
    if before.exit_code == 0:
        problems.append(f"{task.name}: the tests pass before any change")
    touched = run_process(["git", "apply", "--numstat", str(patch)], workdir, 60)
    paths = [line.split("\t", 2)[2] for line in touched.stdout.splitlines() if line.count("\t") >= 2]
    hit = [p for p in paths if any(fnmatch.fnmatch(p, pattern) for pattern in task.protected)]
    if hit:
        problems.append(f"{task.name}: {REFERENCE_PATCH} changes protected files: {', '.join(hit)}")
    applied = run_process(["git", "apply", str(patch)], workdir, 60)
    if applied.exit_code != 0:
        return [*problems, f"{task.name}: {REFERENCE_PATCH} does not apply: {applied.stderr.strip()}"]
    after = run_tests(task, workdir, 120)
    if after.exit_code != 0:
        problems.append(f"{task.name}: the tests fail after {REFERENCE_PATCH}:\n{after.tail(1500)}")
    return problems
