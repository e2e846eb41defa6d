"""`qcoder gen-tests PATH`: synthesize pytest tests and keep only those that earn their place.

Candidates come from one request (the model writes several test functions at once). Every run happens in the
eval sandbox (no network, throw-away directory): model-written tests are untrusted code. A candidate is kept
when it passes three runs in a row (different hash seeds), uses no clock, network or unseeded randomness, and
adds something measured: lines of the target no earlier test covers (coverage.py, per-test contexts), or
mutants of the target no earlier test kills.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.agent.fenced_edits import binds_top_level, unbound_globals
from qcoder.ci.mutate import Mutant, mutants
from qcoder.ci.regress import parse_junit
from qcoder.errors import QcoderError
from qcoder.eval import sandbox

RUNS = 3
TOKENS_PER_TEST = 200
TEST_FILE = "test_qcoder_candidates.py"
MUTANT_DRIVER = Path(__file__).with_name("mutant_driver.py")
NONDETERMINISTIC = re.compile(
    r"\b(time\.(time|sleep|monotonic|perf_counter)|datetime\.(now|today|utcnow)|date\.today|socket|urllib|"
    r"requests|httpx|http\.client|random\.(?!seed)\w+|uuid\.uuid[14]|os\.urandom|secrets\.)")

PROMPT = """Write pytest tests for the Python module `{module}` below{focus}.
Write {n} independent test functions named test_..., each checking one behaviour with exact expected values \
you are sure of. Import what you test from `{module}`. No network, no clock, no randomness, no files outside \
tmp_path. Answer with one ```python code block holding the imports and the test functions.

```python
{source}
```"""


@dataclass
class Target:
    path: Path  # the module file
    root: Path  # the directory it is imported from
    module: str  # dotted name

    @property
    def rel(self) -> str:
        return self.path.relative_to(self.root).as_posix()

    def files(self) -> dict[str, str]:
        """What the sandbox needs to import the module: its top package's Python files, or the file alone."""
        top = self.root / self.rel.split("/")[0]
        paths = sorted(top.rglob("*.py")) if top.is_dir() else [self.path]
        return {p.relative_to(self.root).as_posix(): p.read_text(encoding="utf-8") for p in paths[:500]}


@dataclass
class Candidate:
    name: str
    code: str
    status: str = "generated"  # generated, unchecked, nondeterministic, failed, flaky, useless, kept
    detail: str = ""
    lines: set[int] = field(default_factory=set)
    kills: set[int] = field(default_factory=set)


@dataclass
class GenReport:
    target: str
    candidates: list[Candidate]
    mutants: int = 0
    coverage_before: float = 0.0
    coverage_after: float = 0.0
    score_before: float = 0.0
    score_after: float = 0.0
    out: str = ""

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.status == "kept"]

    def to_dict(self) -> dict:
        return {"target": self.target, "generated": len(self.candidates), "kept": len(self.kept), "out": self.out,
                "coverage": [self.coverage_before, self.coverage_after], "mutants": self.mutants,
                "mutation_score": [self.score_before, self.score_after],
                "candidates": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.candidates]}

    def summary(self) -> str:
        return (f"{self.target}: kept {len(self.kept)}/{len(self.candidates)} generated tests; coverage "
                f"{self.coverage_before:.0%} -> {self.coverage_after:.0%}; mutation score {self.score_before:.0%} -> "
                f"{self.score_after:.0%} ({self.mutants} mutants)")


def progress(message: str) -> None:
    print(f"qcoder: {message}", file=sys.stderr, flush=True)


def find_target(path: str) -> Target:
    file = Path(path).resolve()
    if not file.is_file() or file.suffix != ".py":
        raise QcoderError(f"{path} is not a Python file")
    root = file.parent
    while (root / "__init__.py").is_file():
        root = root.parent
    rel = file.relative_to(root).with_suffix("")
    parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
    return Target(file, root, ".".join(parts))


def parse_candidates(reply: str) -> tuple[str, list[Candidate]]:
    """(the shared header, one candidate per top-level test function or class) from the reply's code blocks. The header
    holds the imports and the helpers the tests may use (constants, fixtures, helper functions and classes)."""
    blocks = re.findall(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", reply, flags=re.S) or [reply]
    imports, helpers, candidates = [], [], []
    for block in blocks:
        tree = _parse_salvaging(block)
        for node in tree.body if tree else []:
            if isinstance(node, ast.Import | ast.ImportFrom):
                imports.append(ast.unparse(node))
            elif (isinstance(node, ast.FunctionDef) and node.name.startswith("test")) or _is_test_class(node):
                if all(c.name != node.name for c in candidates):
                    candidate = Candidate(node.name, ast.unparse(node))
                    if not _checks_something(node):
                        candidate.status, candidate.detail = "unchecked", "asserts nothing"
                    candidates.append(candidate)
            elif isinstance(node, HELPERS) and not _is_test_class(node):
                code = ast.unparse(node)
                if not NONDETERMINISTIC.search(code):
                    helpers.append(code)
    return "\n".join([*dict.fromkeys(imports), *dict.fromkeys(helpers)]), candidates


HELPERS = (ast.Assign, ast.AnnAssign, ast.FunctionDef, ast.ClassDef)


def _is_test_class(node: ast.AST) -> bool:
    """A class pytest collects: named Test..., or a unittest.TestCase. It is one candidate, kept or not whole."""
    return isinstance(node, ast.ClassDef) and (node.name.startswith("Test") or any(
        ast.unparse(base).endswith("TestCase") for base in node.bases))


def _checks_something(node: ast.AST) -> bool:
    """A test earns a run only if it can fail on a wrong value: an assert, pytest.raises or a self.assert*."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Assert):
            return True
        if isinstance(sub, ast.Call):
            name = ast.unparse(sub.func)
            if name.endswith(("raises", "warns")) or name.startswith("self.assert"):
                return True
    return False


def _parse_salvaging(block: str) -> ast.Module | None:
    """The block's syntax tree. A reply cut off in the middle of a function keeps that function's finished
    statements (trailing lines dropped until it parses); a test left with no check is dropped later."""
    lines = block.splitlines()
    for end in range(len(lines), 0, -1):
        try:
            return ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
    return None


def with_target_imports(header: str, candidates: list[Candidate], target: Target, source: str) -> str:
    """The header plus `from module import NAME` for each name the tests use unbound that the target defines
    at its top level (small models write `OutOfRangeError` having imported only the functions)."""
    missing = sorted(n for n in unbound_globals(test_file(header, candidates)) if binds_top_level(source, n))
    return f"{header}\nfrom {target.module} import {', '.join(missing)}".strip() if missing else header


def test_file(header: str, candidates: list[Candidate]) -> str:
    return header + "\n\n\n" + "\n\n\n".join(c.code for c in candidates) + "\n"


class Runner:
    """Runs test files against the target (or a mutant of it) in the sandbox."""

    def __init__(self, target: Target, baseline: dict[str, str], timeout: float):
        self.target = target
        self.files = target.files()
        self.baseline = baseline  # existing test files: name -> text
        self.limits = sandbox.Limits(timeout_s=timeout)

    def pytest(self, tests: dict[str, str], seed: int = 0, module_source: str | None = None,
               coverage: bool = False) -> tuple[dict[str, tuple[bool, str]], dict | None, str]:
        """({test id: (passed, failure)}, coverage json or None, output tail)."""
        files = {**self.files, **self.baseline, **tests}
        if module_source is not None:
            files[self.target.rel] = module_source
        pytest = f"{sys.executable} -m pytest -q -p no:cacheprovider -o junit_family=xunit1 --junitxml=junit.xml"
        names = " ".join(sorted({**self.baseline, **tests}))
        if coverage:
            files[".coveragerc"] = f"[run]\ndynamic_context = test_function\ninclude = {self.target.rel}\n"
            command = (f"{sys.executable} -m coverage run -m {pytest.split(' -m ', 1)[1]} {names}; "
                       f"{sys.executable} -m coverage json -q --show-contexts -o cov.json")
        else:
            command = f"{pytest} {names}"
        result = self._run(["bash", "-c", command], files, self.limits, seed, ("junit.xml", "cov.json"))
        junit = result.files.get("junit.xml")
        outcomes = parse_junit(junit.decode("utf-8", "replace")) if junit else {}
        cov = json.loads(result.files["cov.json"]) if coverage and "cov.json" in result.files else None
        return outcomes, cov, (result.stdout + result.stderr)[-1500:]


    def kills(self, pool: list[Mutant], header: str, passing: list[Candidate]) -> list[set[str]]:
        """For each mutant, the names of the tests that fail on it ("<baseline>": any baseline test)."""
        if not pool:
            return []
        tests = {**self.baseline, **({TEST_FILE: test_file(header, passing)} if passing else {})}
        spec = {"target": self.target.rel,
                "tests": sorted(tests), "timeout": self.limits.timeout_s, "mutants": [m.source for m in pool]}
        files = {**self.files, **tests, "mutants.json": json.dumps(spec),
                 "_qcoder_mutant_driver.py": MUTANT_DRIVER.read_text()}
        limits = dataclasses.replace(self.limits, timeout_s=self.limits.timeout_s * (len(pool) + 1))
        reports = [f"junit{i}.xml" for i in range(len(pool))]
        result = self._run([sys.executable, "_qcoder_mutant_driver.py"], files, limits, 0, tuple(reports))
        everyone = {c.name for c in passing} | ({"<baseline>"} if self.baseline else set())
        out = []
        for name in reports:
            junit = result.files.get(name)
            outcomes = parse_junit(junit.decode("utf-8", "replace")) if junit else {}
            # No report, or nothing ran (the mutant broke collection, or looped): every test kills it.
            out.append({_owner(t) for t, (ok, _) in outcomes.items() if not ok} if outcomes else set(everyone))
        return out

    def _run(self, argv, files, limits, seed, collect):
        # Third-party pytest plugins stay off: they are not the tests' business and slow every start.
        env = {"PYTHONHASHSEED": str(seed), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        result = sandbox.run(argv, files=files, limits=limits, env=env, collect=collect)
        if result.status == "sandbox_error":
            raise QcoderError(f"the sandbox failed: {result.reason}")
        return result


def _candidate(test_id: str) -> str | None:
    """The candidate a pytest id ("test_qcoder_candidates.py::TestX::test_y[2]") or a coverage context
    ("test_qcoder_candidates.TestX.test_y") belongs to: its top-level function or class. None for the tests
    of other files (the baseline)."""
    base = test_id.split("[", 1)[0]
    for prefix in (TEST_FILE + "::", TEST_FILE.removesuffix(".py") + "."):
        if base.startswith(prefix):
            return re.split(r"::|\.", base[len(prefix):])[0]
    return None


def _owner(test_id: str) -> str:
    return _candidate(test_id) or "<baseline>"


def _by_function(outcomes: dict[str, tuple[bool, str]]) -> dict[str, tuple[bool, str]]:
    """{candidate: (passed, failure)}; a parametrized function or a test class passes only when all its tests do."""
    merged: dict[str, tuple[bool, str]] = {}
    for test_id, (passed, failure) in outcomes.items():
        name = _candidate(test_id)
        if name is not None:
            earlier = merged.get(name, (True, ""))
            merged[name] = earlier if not earlier[0] or passed else (False, failure)
    return merged


def line_contexts(cov: dict | None, rel: str) -> tuple[dict[int, set[str]], int]:
    """({line: test functions that ran it}, statements in the target) from coverage's JSON."""
    if not cov:
        return {}, 0
    entry = next((v for k, v in cov.get("files", {}).items() if k.endswith(rel)), None)
    if entry is None:
        return {}, 0
    total = entry["summary"]["num_statements"]
    contexts = {int(n): {_candidate(c) or c for c in ctx if c} for n, ctx in entry.get("contexts", {}).items()}
    return contexts, total


def generate(client, target: Target, *, function: str | None = None, n: int = 8, baseline: dict[str, str] = None,
             max_mutants: int = 30, timeout: float = 60, max_tokens: int | None = None) -> tuple[GenReport, str]:
    """The report and the text of the kept tests ("" when none)."""
    source = target.path.read_text(encoding="utf-8")
    focus = f", focusing on `{function}`" if function else ""
    progress(f"asking the model for {n} candidate tests for {target.module}")
    # Room for n short tests: a small model that keeps writing past them is cut off, its finished tests kept.
    max_tokens = max_tokens or min(4096, 300 + TOKENS_PER_TEST * n)
    # The reply is made to start as a test file, at its first test (where the client can force it: the built-in
    # engine); small models otherwise answer with a copy of the module. The target's names that the tests use
    # are imported afterwards (with_target_imports).
    prefix = "```python\nimport pytest\n\n\ndef test_"
    [reply] = client.sample([{"role": "user", "content": PROMPT.format(module=target.module, focus=focus, n=n,
                                                                       source=source[:20000])}],
                            1, prefix=prefix, temperature=0.2, max_tokens=max_tokens)
    header, candidates = parse_candidates(reply.content)
    header = with_target_imports(header, candidates, target, source)
    if not candidates:
        start = " ".join(reply.content.split())[:200]
        progress(f"the reply held no test function (finish: {reply.finish_reason}); it began: {start!r}")
    report = GenReport(target.module, candidates)
    runner = Runner(target, baseline or {}, timeout)
    runnable = []
    for c in (c for c in candidates if c.status == "generated"):
        hit = NONDETERMINISTIC.search(c.code)
        if hit:
            c.status, c.detail = "nondeterministic", f"uses {hit.group(0)}"
        else:
            runnable.append(c)
    # Three runs with different hash seeds: a test must pass every time.
    for run in range(RUNS):
        alive = [c for c in runnable if c.status == "generated"]
        if not alive:
            break
        progress(f"run {run + 1}/{RUNS} of {len(alive)} candidate(s)")
        outcomes, _, tail = runner.pytest({TEST_FILE: test_file(header, alive)}, seed=run + 1)
        results = _by_function(outcomes)
        for c in alive:
            passed, failure = results.get(c.name, (False, tail))
            if not passed:
                c.status = "failed" if run == 0 else "flaky"
                c.detail = (failure.strip().splitlines() or ["did not run"])[-1][:300]
    passing = [c for c in runnable if c.status == "generated"]
    # Coverage per test (dynamic contexts) for the baseline and the passing candidates in one run.
    cov = None
    if passing or runner.baseline:
        _, cov, _ = runner.pytest({TEST_FILE: test_file(header, passing)} if passing else {}, coverage=True)
    contexts, statements = line_contexts(cov, target.rel)
    baseline_names = set()
    for line, tests in contexts.items():
        for c in passing:
            if c.name in tests:
                c.lines.add(line)
        baseline_names |= {t for t in tests if t not in {c.name for c in passing}}
    base_lines = {n for n, tests in contexts.items() if tests & baseline_names}
    # Mutants on lines some test runs; each is run against the baseline and the passing candidates.
    covered = set(contexts)
    pool = mutants(source, covered, max_mutants) if covered else []
    report.mutants = len(pool)
    progress(f"running the tests against {len(pool)} mutant(s)")
    base_kills = set()
    for i, killed in enumerate(runner.kills(pool, header, passing)):
        if "<baseline>" in killed:
            base_kills.add(i)
        for c in passing:
            if c.name in killed:
                c.kills.add(i)
    # Keep greedily, most useful first: a test must add lines or kills to what is already kept.
    lines, kills = set(base_lines), set(base_kills)
    for c in sorted(passing, key=lambda c: (-len(c.kills - kills), -len(c.lines - lines), c.name)):
        new_kills, new_lines = c.kills - kills, c.lines - lines
        if new_kills or new_lines:
            c.status, c.detail = "kept", f"+{len(new_lines)} lines, +{len(new_kills)} mutants killed"
            lines |= c.lines
            kills |= c.kills
        else:
            c.status, c.detail = "useless", "covers no new line and kills no new mutant"
    if statements:
        report.coverage_before, report.coverage_after = len(base_lines) / statements, len(lines) / statements
    if pool:
        report.score_before, report.score_after = len(base_kills) / len(pool), len(kills) / len(pool)
    kept = [c for c in candidates if c.status == "kept"]
    return report, (test_file(header, kept) if kept else "")
