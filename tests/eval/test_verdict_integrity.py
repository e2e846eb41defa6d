"""A wrong program cannot be scored as passing: the tricks that did it, and a few of their cousins.

HumanEval's check() runs in the call driver; the candidate's process only ever gets arguments. For
HumanEval+/MBPP+ the harness compares the outputs with expected values that never enter the sandbox.
"""

import pytest

from qcoder.eval import datasets
from qcoder.eval.checks import HUMANEVAL_TIMEOUT_S, check_humaneval
from qcoder.eval.plus_tests import PlusChecker
from qcoder.eval.sandbox import Limits
from tests.conftest import needs_shared_data

pytestmark = needs_shared_data

RIGHT_ADD = "def add(x: int, y: int):\n    return x + y\n"
# Writes a well-formed report claiming success into every descriptor it has and every one of its parent's
# it can open, then leaves with status 0 before anything is checked.
FORGER = """
import os, pickle, struct
def _forge():
    claims = [{"nonce": "guess", "passed": True, "error": ""}, {"base": True, "plus": True, "failed": None}]
    for claim in claims:
        data = pickle.dumps(claim)
        frame = struct.pack("!Q", len(data)) + data
        paths = [f"/proc/self/fd/{n}" for n in os.listdir("/proc/self/fd")]
        paths += [f"/proc/{os.getppid()}/fd/{n}" for n in range(64)]
        for path in paths:
            try:
                fd = os.open(path, os.O_WRONLY)
                os.write(fd, frame)
            except OSError:
                pass
    open("verdict.json", "w").write('{"base": true, "plus": true, "failed": null}')
    os._exit(0)
_forge()
"""


@pytest.fixture(scope="module")
def humaneval():
    return {t.task_id: t for t in datasets.load("humaneval").tasks}


@pytest.fixture(scope="module")
def humaneval_plus():
    return {t.task_id: t for t in datasets.load("humaneval+").tasks}


def he_check(task, code):
    return check_humaneval(task, code, Limits(timeout_s=HUMANEVAL_TIMEOUT_S))


def test_humaneval_exit_in_a_default_argument_fails(humaneval):
    task = humaneval["HumanEval/53"]
    assert he_check(task, RIGHT_ADD).status == "pass"
    verdict = he_check(task, "def add(x, y, _=__import__('os')._exit(0)):\n    return 0\n")
    assert (verdict.status, verdict.base) == ("fail", False)
    assert "exited (status 0)" in verdict.error


def test_humaneval_exit_during_a_call_and_forged_reports_fail(humaneval):
    task = humaneval["HumanEval/53"]
    exits = "import os\ndef add(x, y):\n    os._exit(0)\n"
    assert he_check(task, exits).status == "fail"
    assert he_check(task, FORGER + RIGHT_ADD).status == "fail"


def test_humaneval_answer_that_claims_to_equal_anything_fails(humaneval):
    task = humaneval["HumanEval/53"]
    liar = "class Anything:\n    def __eq__(self, other):\n        return True\n" \
           "def add(x, y):\n    return Anything()\n"
    verdict = he_check(task, liar)
    assert verdict.status == "fail" and "not plain data" in verdict.error


def test_humaneval_tests_are_not_readable_by_the_candidate(humaneval):
    # Tests and expected values live only in the driver: the candidate sees no file and no parent memory.
    task = humaneval["HumanEval/53"]
    snoop = """
import os, re
def add(x, y):
    seen = ""
    for root, _, names in os.walk("."):
        for name in names:
            seen += open(os.path.join(root, name), errors="replace").read()
    for what in ("cmdline", "environ", "mem"):
        try:
            seen += open(f"/proc/{os.getppid()}/{what}", "rb").read(1 << 16).decode(errors="replace")
        except OSError:
            pass
    found = re.findall(r"candidate\\(%d, %d\\) == (\\d+)" % (x, y), seen)
    return int(found[0]) if found else -1
"""
    verdict = he_check(task, snoop)
    assert verdict.status == "fail" and "AssertionError" in verdict.error


def test_plus_forged_verdict_file_and_exit_fails(humaneval_plus):
    task = humaneval_plus["HumanEval/53"]
    checker = PlusChecker()
    assert checker.check(task, RIGHT_ADD).status == "pass"
    verdict = checker.check(task, FORGER + RIGHT_ADD)
    assert (verdict.status, verdict.base, verdict.plus) == ("fail", False, False)


def test_plus_expected_outputs_are_nowhere_in_the_sandbox(humaneval_plus):
    # Today's trick read them from job.pkl; now the candidate's directory holds nothing, and the inputs it
    # is called with are all it gets.
    task = humaneval_plus["HumanEval/53"]
    reader = """
import os, pickle
_found = []
for name in os.listdir("."):
    try:
        _found += pickle.load(open(name, "rb"))["expected"]["base"]
    except Exception:
        pass
_answers = iter(_found)
def add(x, y):
    return next(_answers, -1)
"""
    verdict = PlusChecker().check(task, reader)
    assert (verdict.status, verdict.base) == ("fail", False)
    assert verdict.error == "base input 0: wrong output"


def test_plus_exit_after_some_answers_fails(humaneval_plus):
    task = humaneval_plus["HumanEval/53"]
    partial = "import os\n_calls = [0]\ndef add(x, y):\n    _calls[0] += 1\n" \
              "    if _calls[0] > 3:\n        os._exit(0)\n    return x + y\n"
    verdict = PlusChecker().check(task, partial)
    assert verdict.status == "fail" and "base input 3" in verdict.error and "exited" in verdict.error


def test_plus_answer_that_claims_to_equal_anything_fails(humaneval_plus):
    task = humaneval_plus["HumanEval/53"]
    liar = "class Anything(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n" \
           "def add(x, y):\n    return Anything(0)\n"
    verdict = PlusChecker().check(task, liar)
    assert verdict.status == "fail" and "not plain data" in verdict.error


def test_plus_per_input_time_limit_cannot_be_switched_off(humaneval_plus):
    # The per-input limit used to be SIGALRM inside the candidate's own process; now the driver keeps time.
    task = humaneval_plus["HumanEval/53"]
    slow = "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n" \
           "def add(x, y):\n    time.sleep(30)\n    return x + y\n"
    verdict = PlusChecker().check(task, slow)
    assert verdict.status == "timeout" and verdict.error.startswith("base input 0: timeout")
