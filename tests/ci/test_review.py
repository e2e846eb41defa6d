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
     "message": "The loop skips the first value, so the mean is wrong.", "call": "average([1, 2, 3])"},
    # the same problem again, worded differently: merged into the first
    {"file": "stats.py", "line": 4, "quote": "for v in values[1:]:", "severity": "warning", "category": "bug",
     "message": "values[1:] drops an element."},
    # a line that does not exist
    {"file": "stats.py", "line": 99, "quote": "return total", "severity": "error", "category": "bug",
     "message": "Invented."},
    # quoted code that is not there
    {"file": "stats.py", "line": 6, "quote": "return total // len(values)", "severity": "warning",
     "category": "bug", "message": "Integer division."},
    # miscounted by one line, but the quote is right: moved to line 6; then its own example call fails the
    # same way before and after the change, so the change did not cause it: dropped
    {"file": "stats.py", "line": 5, "quote": "return total / len(values)", "severity": "note",
     "category": "bug", "message": "Fails on an empty list.", "call": "average([])"},
    # the old line, which is gone from the new version
    {"line": 4, "quote": "for v in values:", "severity": "error", "category": "bug", "message": "Old."},
    # a quote too short to place: it would match almost any line
    {"quote": "v", "severity": "error", "category": "bug", "message": "Vague."},
    # no line number, but a quote that is in the function shown: placed by the quote (line 3)
    {"quote": "total = 0", "severity": "note", "category": "style", "message": "Could use sum()."},
]


def scripted(body: dict) -> dict:
    prompt = body["messages"][-1]["content"]
    if "security scanner" in prompt:
        return {"content": '[{"id": 0, "verdict": "keep", "explanation": "The argument comes from callers."}]'}
    if "function `average`" not in prompt:
        return {"content": "[]"}  # the other changed function, `run`
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
    assert located == [("stats.py", 3, "note"), ("stats.py", 4, "error")]
    assert "drops an element" in report["findings"][1]["message"]  # the duplicate was merged in
    # the example call, run on the old and the new code, is the evidence
    assert report["findings"][1]["evidence"] == "average([1, 2, 3]): 2.0 before the change, 1.6666666666666667 after"
    refuted = [d for d in report["dropped"] if d["reason"].startswith("the model's example shows no change")]
    assert [d["finding"]["line"] for d in refuted] == [6]
    assert "average([]) gives raised ZeroDivisionError: division by zero before and after" in refuted[0]["reason"]
    reasons = [d["reason"] for d in report["dropped"]]
    assert "line 99 does not exist in stats.py (10 lines)" in reasons
    assert reasons.count("quoted code is not at stats.py:6") == 1
    assert reasons.count("quoted code is not at stats.py:4") == 1  # the old line
    assert reasons.count("quoted code is not in stats.py") == 1  # "v"
    prompts = [r["messages"][-1]["content"] for r in fake.requests]
    assert len(prompts) == 2  # one request per changed function: `average` and `run`
    average = next(p for p in prompts if "function `average`" in p)
    assert "app.py:3:" in average  # its caller
    assert "     -|     for v in values:\n    4+|     for v in values[1:]:" in average  # old line above new
    # the reply is held to a JSON schema whose quotes are the lines shown (enforced by the built-in engine)
    formats = {"function `average`" in r["messages"][-1]["content"]: r["response_format"] for r in fake.requests}
    schema = formats[True]["json_schema"]["schema"]
    assert schema["properties"]["findings"]["items"]["properties"]["quote"]["enum"] == NEW.splitlines()[:6]


def test_samples_must_agree_on_a_line(changed_repo, capsys):
    def choice(*findings):
        return {"content": json.dumps(list(findings))}

    skips = {"quote": "for v in values[1:]:", "severity": "error", "category": "bug", "message": "Skips one."}
    empty = {"quote": "return total / len(values)", "severity": "warning", "category": "bug", "message": "Empty."}

    def sampled(body):
        if "function `average`" not in body["messages"][-1]["content"]:
            return {"choices": [choice()] * body.get("n", 1)}
        assert body["n"] == 3 and body["temperature"] > 0
        return {"choices": [choice(skips, empty), choice(skips), choice()]}

    with FakeModel(default=sampled) as fake:
        code, out = review(fake, "--format", "json", "--no-bandit", "--samples", "3", capsys=capsys)
    report = json.loads(out)
    assert [(f["line"], f["message"]) for f in report["findings"]] == [(4, "Skips one.")]  # 2 of 3 agree
    assert "1 of 3 replies flagged line 6; 2 needed" in [d["reason"] for d in report["dropped"]]
    assert main(["review", "--samples", "2", "--agree", "3", "--base-url", fake.url]) == 2
    assert capsys.readouterr().err.strip() == "qcoder: error: --samples must be at least 1, and --agree between 1 " \
                                               "and --samples"


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
    assert "(run: `average([1, 2, 3]): 2.0 before the change, 1.6666666666666667 after`)" in out


def test_bad_range_is_one_line_error(changed_repo, capsys):
    assert main(["review", "nosuchrev..HEAD", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert capsys.readouterr().err.strip() == "qcoder: error: unknown revision 'nosuchrev'"


def test_diff_hunk_counts_decide_what_is_content():
    from qcoder.ci.diff import parse_unified

    text = ("--- a/c.txt\n+++ b/c.txt\n@@ -1,3 +1,3 @@\n keep\n--- old rule\n+++ new rule\n keep\n"
            "--- a/d.txt\n+++ b/d.txt\n@@ -5 +5,2 @@\n-x\n+y\n+z\n")
    c, d = parse_unified(text)
    assert (c.path, c.added, c.removed) == ("c.txt", {2}, {2: ["-- old rule"]})  # not taken for file headers
    assert (d.path, d.added, d.removed) == ("d.txt", {5, 6}, {5: ["x"]})


def test_a_finding_proven_by_its_call_moves_from_an_unchanged_line_to_the_change(repo, monkeypatch, capsys):
    repo.commit("mean", **{"mean.py": "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n"
                                      "    return total / len(xs)\n"})
    repo.write("mean.py", "def mean(xs):\n    total = 0\n    for x in xs[1:]:\n        total += x\n"
                          "    return total / len(xs)\n")
    monkeypatch.chdir(repo.root)
    pointed_below = {"quote": "    return total / len(xs)", "message": "The mean is wrong.", "call": "mean([2, 4])",
                     "severity": "error", "category": "bug", "test": ""}
    with FakeModel(default=lambda body: {"content": json.dumps({"findings": [pointed_below]})}) as fake:
        code, out = review(fake, "--format", "json", "--no-bandit", capsys=capsys)
    [finding] = json.loads(out)["findings"]
    assert (finding["line"], finding["quote"]) == (3, "for x in xs[1:]:")  # the only changed line
    assert finding["evidence"] == "mean([2, 4]): 3.0 before the change, 2.0 after"
    assert "pointed at line 5" in finding["message"]
