"""The project's tests: which command runs them, a run in a scratch copy, and what the run says.

`detect_test_command` finds the runner when the settings name none (pytest or unittest, `npm test`,
`cargo test`, `go test`). `Tester.run` copies the workspace to a throw-away folder, applies proposed file
contents there, and runs the command through the agent's own Shell rules (timeout, scrubbed environment,
optional sandbox): the workspace itself is never touched. pytest runs report each test (JUnit XML) and
their tracebacks; other runners report the exit status only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.agent.tools.shell import Shell, ShellResult
from qcoder.agent.tools.workspace import Workspace

JUNIT_FILE = ".qcoder-junit.xml"
# Appended to a plain pytest command: per-test results in a file, short tracebacks (`path:line: in name`), and
# compared values in full (pytest >= 8; older ones warn): `assert ['Ann@Example..., 'bob@x.org'] == ['Ann@Exa...`
# hides the very difference a fix needs.
PYTEST_EXTRA = (f" -p no:cacheprovider -o junit_family=xunit1 --junitxml={JUNIT_FILE} --tb=short"
                " -o verbosity_assertions=2")
PYTEST_COMMAND = re.compile(r"^\s*(\S*python[\d.]*\s+-m\s+pytest|\S*pytest)(\s[^;&|`<>$]*)?$")
UNITTEST_LINE = re.compile(r"^(\w+) \(([\w.]+)\)(?:\n.*)? \.\.\. (ok|FAIL|ERROR|skipped.*|expected failure)$", re.M)
# Linked, not copied, into scratch copies: installed dependencies the tests need but never change.
SHARED_DIRS = ("node_modules", ".venv", "venv", "target")
SUITE = "(test command)"  # the one "test" of a runner that reports only its exit status


def is_test_file(path: str) -> bool:
    """Tests, fixtures and test data by the usual conventions of Python, JS/TS, Go and Rust."""
    parts = Path(path).parts
    name = parts[-1] if parts else path
    return (any(p in ("tests", "test", "__tests__", "testdata", "spec") for p in parts[:-1])
            or name.startswith("test_") or name == "conftest.py"
            or re.search(r"(_test\.(py|go)|\.(test|spec)\.[jt]sx?)$", name) is not None)


def detect_test_command(root: Path, shell: Shell | None = None) -> str | None:
    """The command that runs this project's tests, by its files; None when there are no tests to run."""
    root = Path(root)
    files = [Workspace(root).rel(p) for p in Workspace(root).files(root)[:5000]]
    if any(f.endswith(".py") and is_test_file(f) for f in files):
        if shell is None or shell.run("python -c 'import pytest'", 30).ok:
            return "python -m pytest -q"
        return "python -m unittest discover -v"
    package = root / "package.json"
    if package.is_file():
        try:
            script = (json.loads(package.read_text()).get("scripts") or {}).get("test", "")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            script = ""
        if script and "no test specified" not in script:
            return "npm test"
    if (root / "Cargo.toml").is_file():
        return "cargo test"
    if (root / "go.mod").is_file():
        return "go test ./..."
    return None


@dataclass
class TestReport:
    command: str
    exit_code: int | None
    output: str
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> passed | failed | error | skipped
    failures: dict[str, str] = field(default_factory=dict)  # test id -> message and traceback
    elapsed_s: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def failing(self) -> list[str]:
        failed = [t for t, o in self.outcomes.items() if o in ("failed", "error")]
        return failed or ([] if self.ok else [SUITE])

    @property
    def passed(self) -> set[str]:
        passed = {t for t, o in self.outcomes.items() if o == "passed"}
        return passed | ({SUITE} if self.ok and not self.outcomes else set())

    def summary(self) -> str:
        if self.timed_out:
            return "timed out"
        if not self.outcomes:
            return "pass" if self.ok else f"fail (exit {self.exit_code})"
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: kv[0] != "failed"))

    def error_line(self, test: str) -> str:
        """The one line that says why `test` failed (the exception), for listings."""
        text = self.failures.get(test) or self.output
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        first_e = next((line for line in lines if line.startswith("E ")), None)  # pytest's own verdict
        if first_e:
            return first_e[1:].strip()[:200]
        for line in reversed(lines):
            if re.match(r"^(E\s+)?[\w.]*(Error|Exception|Exit|Failure)\b", line):
                return line.removeprefix("E").strip()[:200]
        return lines[-1][:200] if lines else ""

    def to_event(self) -> dict:
        return {"command": self.command, "passed": self.ok, "exit_code": self.exit_code, "summary": self.summary(),
                "failing": self.failing[:20], "output_tail": self.output[-2000:]}


class Tester:
    """Runs one test command in scratch copies of a workspace, with the agent's shell rules."""

    def __init__(self, workspace: Path, command: str, shell: Shell, timeout: float = 600.0):
        self.workspace = Path(workspace).resolve()
        self.command = command
        self.shell = shell
        self.timeout = timeout
        self.structured = PYTEST_COMMAND.match(command) is not None

    def run(self, files: dict[str, str] | None = None, timeout: float | None = None) -> TestReport:
        """Run the tests on the workspace as it is, with `files` (path -> new text) written over it."""
        scratch = Path(tempfile.mkdtemp(prefix="qcoder-scratch-"))
        try:
            self._copy(scratch)
            for rel, text in (files or {}).items():
                target = scratch / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            shell = Shell(scratch, timeout=self.shell.timeout, env_allow=self.shell.env_allow,
                          use_sandbox=self.shell.use_sandbox)
            command = self.command + (PYTEST_EXTRA if self.structured else "")
            started = time.monotonic()
            result = shell.run(command, timeout or self.timeout)
            report = self._report(result, scratch, time.monotonic() - started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return report

    def _copy(self, scratch: Path) -> None:
        ws = Workspace(self.workspace)
        for path in ws.files(self.workspace):
            rel = ws.rel(path)
            if rel.split("/", 1)[0] in SHARED_DIRS:
                continue
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, scratch / rel)
        for name in SHARED_DIRS:
            if (self.workspace / name).is_dir():
                os.symlink(self.workspace / name, scratch / name)

    def _report(self, result: ShellResult, scratch: Path, elapsed: float) -> TestReport:
        # Paths in tracebacks name the scratch copy; show them as workspace-relative paths.
        output = result.output.replace(str(scratch) + os.sep, "")
        report = TestReport(self.command, result.exit_code, output, elapsed_s=round(elapsed, 3),
                            timed_out=result.timed_out)
        junit = scratch / JUNIT_FILE
        if self.structured and junit.is_file():
            _read_junit(junit, report, str(scratch) + os.sep)
        elif "unittest" in self.command:
            for name, where, outcome in UNITTEST_LINE.findall(output):
                report.outcomes[f"{where}"] = ("passed" if outcome in ("ok", "expected failure") else
                                               "skipped" if outcome.startswith("skipped") else
                                               "failed" if outcome == "FAIL" else "error")
                if outcome in ("FAIL", "ERROR"):
                    report.failures[where] = _unittest_failure(output, name, where)
        return report


def _read_junit(path: Path, report: TestReport, scratch_prefix: str) -> None:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return
    for case in root.iter("testcase"):
        test = _test_id(case)
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                text = (node.text or node.get("message") or "").replace(scratch_prefix, "")  # text has the message
                break
        if outcome != "passed" and report.outcomes.get(test) in ("failed", "error"):
            continue  # a failing test whose teardown errs too: keep the first failure
        report.outcomes[test] = outcome
        if outcome in ("failed", "error"):
            captured = "".join((case.findtext(t) or "") for t in ("system-out", "system-err")).strip()
            report.failures[test] = text.strip() + (f"\n--- captured output ---\n{captured[-1500:]}" if captured else "")


def _test_id(case) -> str:
    """pytest's node id (`tests/test_x.py::TestY::test_z`) from a JUnit (xunit1) test case."""
    file, classname, name = case.get("file"), case.get("classname") or "", case.get("name") or ""
    if not classname:  # a collection error: the test module itself
        return file or name
    module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
    inner = classname[len(module) + 1:] if module and classname.startswith(module + ".") else ""
    return "::".join(p for p in (file, *inner.split(".")) if p) + f"::{name}"


def _unittest_failure(output: str, name: str, where: str) -> str:
    marker = re.search(rf"^(FAIL|ERROR): {re.escape(name)} \({re.escape(where)}\)\n-+\n(.*?)(?=^=+$|^-+$)",
                       output, re.S | re.M)
    return marker.group(2).strip() if marker else ""
