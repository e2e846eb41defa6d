"""`qcoder ci regress BASE HEAD`: which tests broke between two revisions, and which commit broke each.

Both revisions run the test command in clean worktrees. For each broken test: the commits in the range that
touched the files it covers (coverage.py at HEAD), the first bad commit (a linear walk for short ranges,
`git bisect run` for longer ones) and, when a model is given, a short explanation grounded in the failure.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qcoder.agent.tools.shell import Shell
from qcoder.ci.git import git, resolve_rev, worktree
from qcoder.errors import QcoderError

EXPLAIN_PROMPT = """A test broke between two revisions. In two or three sentences, explain the likely cause, \
citing the failure output and the change. Do not speculate beyond them.

Test: {test}
Failure output:
```
{failure}
```
First bad commit {commit}: {subject}
```diff
{diff}
```"""


@dataclass
class Broken:
    test: str
    failure: str
    touching_commits: list[dict] = field(default_factory=list)  # [{"commit", "subject"}], oldest first
    culprit: dict | None = None
    explanation: str = ""


@dataclass
class RegressReport:
    base: str
    head: str
    commits: int
    test_command: str
    broken: list[Broken] = field(default_factory=list)
    base_failures: list[str] = field(default_factory=list)
    new_failures: list[str] = field(default_factory=list)  # tests absent at BASE that fail at HEAD

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def progress(message: str) -> None:
    print(f"qcoder: {message}", file=sys.stderr, flush=True)


def is_pytest(command: str) -> bool:
    return "pytest" in command


def run_tests(tree: Path, command: str, timeout: float, tests: list[str] = ()) -> dict[str, tuple[bool, str]]:
    """{test id: (passed, failure text)}. Without pytest there is one pseudo-test: the command itself."""
    shell = Shell(tree, timeout=timeout)
    selection = " ".join(shlex.quote(t) for t in tests)
    if not is_pytest(command):
        result = shell.run(f"{command} {selection}".strip())
        return {command: (result.ok, result.output[-4000:])}
    with tempfile.TemporaryDirectory(prefix="qcoder-junit-") as tmp:
        junit = Path(tmp) / "junit.xml"
        result = shell.run(f"{command} -p no:cacheprovider -o junit_family=xunit1 --junitxml={shlex.quote(str(junit))} "
                           f"{selection}".strip())
        if not junit.is_file():
            raise QcoderError(f"the test command did not run in {tree.name}: {result.text()[-500:]}")
        return parse_junit(junit.read_text(encoding="utf-8", errors="replace"))


def parse_junit(text: str) -> dict[str, tuple[bool, str]]:
    outcomes = {}
    for case in ET.fromstring(text).iter("testcase"):
        file = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        classname = case.get("classname", "")
        # xunit1 classname is "pkg.test_mod" or "pkg.test_mod.TestClass"; a class part follows the module.
        module = file.removesuffix(".py").replace("/", ".")
        cls = classname[len(module) + 1:] if classname.startswith(module + ".") else ""
        test_id = "::".join(p for p in (file, cls, case.get("name", "")) if p)
        problem = next((c for c in case if c.tag in ("failure", "error")), None)
        skipped = any(c.tag == "skipped" for c in case)
        if skipped:
            continue
        text_out = "" if problem is None else f"{problem.get('message', '')}\n{problem.text or ''}"
        outcomes[test_id] = (problem is None, text_out.strip()[-4000:])
    return outcomes


def commits_between(repo: Path, base: str, head: str, paths: list[str] = ()) -> list[dict]:
    out = git(repo, "log", "--reverse", "--format=%H%x09%s", f"{base}..{head}", *(["--", *paths] if paths else []))
    return [{"commit": c, "subject": s} for c, _, s in (line.partition("\t") for line in out.splitlines() if line)]


def covered_files(tree: Path, command: str, test: str, timeout: float) -> list[str]:
    """The repository files a test executes, measured with coverage.py at HEAD."""
    if not is_pytest(command):
        return []
    data = tree / ".qcoder-coverage"
    parts = shlex.split(command)
    if "pytest" not in parts:  # "python -m pytest": run pytest under coverage with the same options
        return []
    options = parts[parts.index("pytest") + 1:]
    cov = f"{shlex.quote(sys.executable)} -m coverage"
    Shell(tree, timeout=timeout).run(
        f"COVERAGE_FILE={data} {cov} run --source=. -m pytest {shlex.join(options)} -p no:cacheprovider "
        f"{shlex.quote(test)} >/dev/null 2>&1; COVERAGE_FILE={data} {cov} json -q -o {data}.json")
    try:
        files = json.loads(Path(f"{data}.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        return []
    return sorted(f for f in files if not f.startswith(("/", "..")))


def first_bad(repo: Path, tree: Path, base: str, commits: list[dict], command: str, test: str, timeout: float,
              bisect_over: int) -> dict | None:
    """The first commit after BASE where `test` fails."""
    if not commits:
        return None
    test_cmd = f"{command} {shlex.quote(test)}" if is_pytest(command) else command
    if len(commits) <= bisect_over:
        for c in commits:
            git(tree, "checkout", "--quiet", "--detach", c["commit"])
            if not Shell(tree, timeout=timeout).run(test_cmd).ok:
                return c
        return None
    progress(f"bisecting {len(commits)} commits for {test}")
    git(tree, "bisect", "start", commits[-1]["commit"], base)
    try:
        script = Path(tree).parent / "bisect-run.sh"
        script.write_text(f"#!/bin/sh\n{test_cmd} >/dev/null 2>&1 && exit 0 || exit 1\n")
        script.chmod(0o755)
        git(tree, "bisect", "run", str(script), timeout=timeout * (len(commits).bit_length() + 2))
        bad = git(tree, "rev-parse", "refs/bisect/bad").strip()
    finally:
        git(tree, "bisect", "reset", "--quiet", check=False)
    return next((c for c in commits if c["commit"] == bad), {"commit": bad, "subject": ""})


def regress(repo: Path, base: str, head: str, command: str, *, client=None, timeout: float = 900,
            bisect_over: int = 4) -> RegressReport:
    base_sha, head_sha = resolve_rev(repo, base), resolve_rev(repo, head)
    commits = commits_between(repo, base_sha, head_sha)
    report = RegressReport(base_sha, head_sha, len(commits), command)
    with worktree(repo, base_sha) as tree:
        progress(f"running the tests at BASE {base_sha[:10]}")
        before = run_tests(tree, command, timeout)
    with worktree(repo, head_sha) as tree:
        progress(f"running the tests at HEAD {head_sha[:10]}")
        after = run_tests(tree, command, timeout)
        report.base_failures = sorted(t for t, (ok, _) in before.items() if not ok)
        report.new_failures = sorted(t for t, (ok, _) in after.items() if not ok and t not in before)
        broken = sorted(t for t, (ok, _) in after.items() if not ok and before.get(t, (False, ""))[0])
        for test in broken:
            item = Broken(test, after[test][1])
            paths = covered_files(tree, command, test, timeout)
            item.touching_commits = commits_between(repo, base_sha, head_sha, paths) if paths else []
            item.culprit = first_bad(repo, tree, base_sha, commits, command, test, timeout, bisect_over)
            git(tree, "checkout", "--quiet", "--detach", head_sha)
            if client is not None and item.culprit:
                item.explanation = explain(client, repo, item)
            report.broken.append(item)
    return report


def explain(client, repo: Path, item: Broken) -> str:
    diff = git(repo, "show", "--format=", "--unified=3", item.culprit["commit"])[:6000]
    prompt = EXPLAIN_PROMPT.format(test=item.test, failure=item.failure[-2500:], commit=item.culprit["commit"][:10],
                                   subject=item.culprit["subject"], diff=diff)
    reply = client.chat([{"role": "user", "content": prompt}], temperature=0.0, max_tokens=300)
    return " ".join(reply.content.split())[:1200]


def to_text(report: RegressReport) -> str:
    head = f"{report.base[:10]}..{report.head[:10]} ({report.commits} commits): "
    if not report.broken:
        lines = [head + "no regressions."]
    else:
        lines = [head + f"{len(report.broken)} test(s) broke."]
        for b in report.broken:
            lines.append(f"- {b.test}")
            lines.append(f"    failure: {b.failure.splitlines()[0] if b.failure else '?'}")
            if b.culprit:
                lines.append(f"    first bad commit: {b.culprit['commit'][:10]} {b.culprit['subject']}")
            if b.touching_commits:
                lines.append("    commits touching the code it covers: "
                             + ", ".join(c["commit"][:10] for c in b.touching_commits))
            if b.explanation:
                lines.append(f"    why: {b.explanation}")
    if report.new_failures:
        lines.append("new tests failing at HEAD: " + ", ".join(report.new_failures))
    if report.base_failures:
        lines.append(f"already failing at BASE: {len(report.base_failures)}")
    return "\n".join(lines)
