"""`qcoder review` with a scripted model: findings are checked against the code, SARIF is valid 2.1.0."""

from __future__ import annotations

import json

import jsonschema
import pytest

from qcoder.ci.sarif import SCHEMA_PATH
from qcoder.cli import main
from tests.fake_openai import FakeModel

OLD = '''def average(values):
    """The mean of a non-empty list."""
    total = 0
    for v in values:
        total += v
    return total / len(values)
'''
NEW = '''def average(values):
    """The mean of a non-empty list."""
    total = 0
    for v in values[1:]:
        total += v
    return total / len(values)


def run(expression):
    return eval(expression)
'''
CALLER = "from stats import average\n\nprint(average([1, 2, 3]))\n"

FINDINGS = [
    # real: the first element is skipped (line 4 of the new version)
    {"file": "stats.py", "line": 4, "quote": "for v in values[1:]:", "severity": "error", "category": "bug",
     "message": "The loop skips the first value, so the mean is wrong."},
    # the same problem again, worded differently: merged into the first
    {"file": "stats.py", "line": 4, "quote": "for v in values[1:]:", "severity": "warning", "category": "bug",
     "message": "values[1:] drops an element."},
    # a line that does not exist
    {"file": "stats.py", "line": 99, "quote": "return total", "severity": "error", "category": "bug",
     "message": "Invented."},
    # quoted code that is not there
    {"file": "stats.py", "line": 6, "quote": "return total // len(values)", "severity": "warning",
     "category": "bug", "message": "Integer division."},
    # miscounted by one line, but the quote is right: moved to line 6
    {"file": "stats.py", "line": 5, "quote": "return total / len(values)", "severity": "note",
     "category": "bug", "message": "Fails on an empty list."},
    # a file outside the change
    {"file": "other.py", "line": 1, "quote": "x", "severity": "error", "category": "bug", "message": "Nope."},
]


def scripted(body: dict) -> dict:
    prompt = body["messages"][-1]["content"]
    if "security scanner" in prompt:
        return {"content": '[{"id": 0, "verdict": "keep", "explanation": "The argument comes from callers."}]'}
    return {"content": "Here is my review:\n```json\n" + json.dumps(FINDINGS) + "\n```"}


@pytest.fixture
def changed_repo(repo, monkeypatch):
    repo.commit("stats", **{"stats.py": OLD, "app.py": CALLER})
    repo.write("stats.py", NEW)
    monkeypatch.chdir(repo.root)
    return repo


def review(fake, *args, capsys):
    code = main(["review", "--base-url", fake.url, "--model", "scripted", *args])
    return code, capsys.readouterr().out


def test_findings_are_checked_and_merged(changed_repo, capsys):
    with FakeModel(default=scripted) as fake:
        code, out = review(fake, "--format", "json", "--no-bandit", capsys=capsys)
    report = json.loads(out)
    assert code == 0
    located = [(f["file"], f["line"], f["severity"]) for f in report["findings"]]
    assert located == [("stats.py", 4, "error"), ("stats.py", 6, "note")]
    assert "drops an element" in report["findings"][0]["message"]  # the duplicate was merged in
    reasons = " | ".join(d["reason"] for d in report["dropped"])
    assert "line 99 does not exist" in reasons
    assert "quoted code is not at stats.py:6" in reasons
    assert "other.py" in reasons
    prompt = fake.requests[0]["messages"][-1]["content"]
    assert "Enclosing function `average`" in prompt and "app.py:3:" in prompt  # the function and its caller


def test_sarif_validates_against_the_2_1_0_schema(changed_repo, capsys, tmp_path):
    out_file = tmp_path / "review.sarif"
    with FakeModel(default=scripted) as fake:
        code, _ = review(fake, "--format", "sarif", "-o", str(out_file), "--fail-on", "error", capsys=capsys)
    log = json.loads(out_file.read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(log, schema, cls=jsonschema.Draft4Validator)
    results = log["runs"][0]["results"]
    lines = {r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results}
    assert 99 not in lines and 4 in lines
    assert code == 1  # an error-level finding trips --fail-on error
    from qcoder.ci import bandit

    if bandit.available():  # eval() on a changed line: bandit's finding, explained by the model, not invented
        security = [r for r in results if r["ruleId"].startswith("bandit/")]
        assert security and security[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 10
        assert "comes from callers" in security[0]["message"]["text"]


def test_fail_on_and_markdown(changed_repo, capsys):
    clean = lambda body: {"content": "[]"}  # noqa: E731
    with FakeModel(default=clean) as fake:
        code, out = review(fake, "--format", "markdown", "--no-bandit", "--fail-on", "warning", capsys=capsys)
    assert code == 0 and "No findings" in out
    with FakeModel(default=scripted) as fake:
        code, out = review(fake, "--format", "markdown", "--no-bandit", "--fail-on", "warning", capsys=capsys)
    assert code == 1 and "`stats.py:4`" in out


def test_bad_range_is_one_line_error(changed_repo, capsys):
    assert main(["review", "nosuchrev..HEAD", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert capsys.readouterr().err.strip() == "qcoder: error: unknown revision 'nosuchrev'"
