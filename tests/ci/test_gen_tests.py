"""`qcoder gen-tests` with a scripted model: only passing, stable tests that add coverage or kill mutants stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qcoder.cli import main
from tests.fake_openai import FakeModel

MODULE = '''PERCENT = 100


def clamp(x, lo, hi):
    """x limited to [lo, hi]."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0
'''
WORDS = [f"w{i}" for i in range(12)]


def set_order(seed: int) -> list[str]:
    code = f"print(repr(list({set(WORDS)!r})))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                         capture_output=True, text=True, check=True).stdout
    return eval(out)


def candidates() -> str:
    order = set_order(1)  # the order the first run sees; runs 2 and 3 use other hash seeds
    assert order != set_order(2) or order != set_order(3)
    return f'''```python
from mathx import clamp, sign
import pytest
import time
import unittest

NEGATIVES = [-1, -5]


def test_clamp_low():
    assert clamp(-5, 0, 10) == 0


def test_clamp_low_again():
    assert clamp(-7, 0, 10) == 0


def test_sign_positive():
    assert sign(3) == 1


def test_wrong_expectation():
    assert clamp(50, 0, 10) == 50


def test_flaky_set_order():
    assert list({set(WORDS)!r}) == {order!r}


def test_nothing_to_do_with_the_module():
    assert 1 + 1 == 2


def test_uses_the_clock():
    assert time.time() > 0


@pytest.mark.parametrize("x", NEGATIVES)
def test_sign_negative(x):
    assert sign(x) == -1


class TestSignZero(unittest.TestCase):
    def test_zero(self):
        self.assertEqual(sign(0), 0)


def test_percent_is_the_upper_bound():
    assert clamp(250, 0, PERCENT) == 100  # PERCENT is not imported above: qcoder adds it from the module


def test_calls_without_checking():
    clamp(20, 0, 10)


def test_cut_off_by_the_token_limit():
    assert clamp(20, 0, 10) == 10
    assert clamp('''  # the reply ends here, inside a statement: the finished assert above is kept


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mathx.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_only_tests_that_earn_their_place_are_kept(project, capsys):
    with FakeModel(default=lambda body: {"content": candidates()}) as fake:
        code = main(["gen-tests", "mathx.py", "--json", "--n", "7", "--max-mutants", "8", "--base-url", fake.url, "--model", "scripted"])
    assert code == 0
    assert len(fake.requests) == 1  # all candidates from one request
    report = json.loads(capsys.readouterr().out)
    status = {c["name"]: c["status"] for c in report["candidates"]}
    assert status == {
        "test_clamp_low": "kept",
        "test_clamp_low_again": "useless",  # same lines, same mutants as test_clamp_low
        "test_sign_positive": "kept",
        "test_wrong_expectation": "failed",
        "test_flaky_set_order": "flaky",
        "test_nothing_to_do_with_the_module": "useless",  # no coverage of the target, kills no mutant
        "test_uses_the_clock": "nondeterministic",
        "test_sign_negative": "kept",  # parametrized, over a helper constant: both cases pass
        "TestSignZero": "kept",  # a unittest-style class is one candidate
        "test_percent_is_the_upper_bound": "useless",  # passes (not a NameError: PERCENT was imported), adds nothing
        "test_calls_without_checking": "unchecked",  # covers a new line, but could not fail on a wrong value
        "test_cut_off_by_the_token_limit": "kept",  # its finished first line covers the `x > hi` branch
    }
    assert (report["generated"], report["kept"]) == (12, 5)
    before, after = report["coverage"]
    assert before == 0 and 0 < after < 1
    assert report["mutants"] > 0 and report["mutation_score"][0] == 0 < report["mutation_score"][1]
    written = (project / report["out"]).read_text()
    assert "def test_clamp_low()" in written and "def test_sign_positive()" in written
    assert "NEGATIVES = [-1, -5]" in written
    assert "test_wrong_expectation" not in written and "test_flaky" not in written
    # the kept file passes on its own
    assert subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", report["out"]],
                          cwd=project, env={**os.environ, "PYTHONPATH": str(project)}).returncode == 0


def test_baseline_tests_set_the_before_numbers(project, capsys):
    (project / "test_base.py").write_text("from mathx import clamp\n\n\ndef test_low():\n    assert clamp(-1, 0, 5) == 0\n")
    with FakeModel(default=lambda body: {"content": candidates()}) as fake:
        main(["gen-tests", "mathx.py", "--json", "--baseline", "test_base.py", "--out", "tests/test_new.py", "--max-mutants", "8",
              "--base-url", fake.url])
    report = json.loads(capsys.readouterr().out)
    status = {c["name"]: c["status"] for c in report["candidates"]}
    assert status["test_clamp_low"] == "useless"  # the baseline already does what it does
    assert status["test_sign_positive"] == "kept"
    assert 0 < report["coverage"][0] < report["coverage"][1]
    assert report["mutation_score"][0] < report["mutation_score"][1]


def test_never_writes_over_an_existing_file(project, capsys):
    (project / "tests").mkdir()
    (project / "tests" / "test_mathx_generated.py").write_text("# mine\n")
    assert main(["gen-tests", "mathx.py", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (project / "tests" / "test_mathx_generated.py").read_text() == "# mine\n"


def test_a_mutant_that_loops_in_every_test_is_stopped_and_counts_as_killed(tmp_path):
    from qcoder.ci.gen_tests import Candidate, Runner, find_target
    from qcoder.ci.mutate import Mutant

    source = "def countdown(n):\n    while n > 0:\n        n -= 1\n    return n\n"
    (tmp_path / "loops.py").write_text(source)
    tests = [Candidate(f"test_{i}", f"def test_{i}():\n    assert countdown({i}) == 0\n") for i in (3, 5)]
    looping = Mutant(3, "removed statement", "n -= 1 removed", source.replace("        n -= 1\n", "        pass\n"))
    wrong = Mutant(4, "constant", "return 1", source.replace("return n", "return 1"))
    same = Mutant(2, "comparison", "n >= 1", source.replace("while n > 0", "while n >= 1"))  # equivalent on ints
    kills = Runner(find_target(str(tmp_path / "loops.py")), {}, timeout=3).kills(
        [looping, wrong, same], "from loops import countdown", tests)
    # the mutants after the looping one still get their own verdicts (the run is not lost to its time limit)
    assert kills == [{"test_3", "test_5"}, {"test_3", "test_5"}, set()]
