"""`qcoder ci regress` on a temp repository with a seeded regression."""

from __future__ import annotations

import json
import sys

import pytest

from qcoder.cli import main
from tests.fake_openai import FakeModel

CALC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
TESTS = ("from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
         "def test_mul():\n    assert mul(2, 3) == 6\n")


@pytest.fixture
def history(repo, monkeypatch):
    """base, then: docs, the regression in add(), an unrelated mul() refactor, more docs."""
    base = repo.commit("calc", **{"calc.py": CALC, "test_calc.py": TESTS})
    repo.commit("docs", **{"README.md": "calc\n"})
    bad = repo.commit("add: include the carry", **{"calc.py": CALC.replace("a + b", "a + b + 1")})
    repo.commit("mul: spell it out", **{"calc.py": CALC.replace("a + b", "a + b + 1").replace("a * b", "b * a")})
    repo.commit("more docs", **{"README.md": "calc, the library\n"})
    monkeypatch.chdir(repo.root)
    return base, bad


@pytest.mark.parametrize("bisect_over", [10, 2], ids=["linear", "bisect"])
def test_regress_finds_and_attributes_the_seeded_regression(history, capsys, bisect_over):
    base, bad = history
    with FakeModel(default=lambda body: {"content": "add() now adds one too many: the carry commit."}) as fake:
        code = main(["ci", "regress", base, "HEAD", "--json", "--test-cmd", f"{sys.executable} -m pytest -q",
                     "--bisect-over", str(bisect_over), "--base-url", fake.url, "--model", "scripted"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["commits"] == 4
    assert [b["test"] for b in report["broken"]] == ["test_calc.py::test_add"]  # test_mul still passes
    broken = report["broken"][0]
    assert broken["culprit"]["commit"] == bad
    assert "assert 6 == 5" in broken["failure"]
    # calc.py is what the test covers: the two commits that changed it, not the docs commits
    assert [c["subject"] for c in broken["touching_commits"]] == ["add: include the carry", "mul: spell it out"]
    assert broken["explanation"].startswith("add() now adds one too many")
    prompt = fake.requests[0]["messages"][-1]["content"]
    assert "assert 6 == 5" in prompt and "a + b + 1" in prompt  # grounded in the failure and the diff


def test_no_regression_exits_zero(history, capsys):
    base, _ = history
    code = main(["ci", "regress", base, base + "~0", "--no-explain", "--test-cmd", f"{sys.executable} -m pytest -q"])
    assert code == 0 and "no regressions" in capsys.readouterr().out
