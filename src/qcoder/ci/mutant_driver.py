"""Runs inside the sandbox: the tests against each mutant in turn, in one process (pytest starts once).

Reads mutants.json ({"target", "package", "tests", "timeout", "mutants": [source, ...]}) and writes
junit<i>.xml per mutant. A mutant that loops forever is stopped by an alarm; its tests then fail: killed.
"""

import json
import signal
import sys

import pytest


def _timed_out(signum, frame):
    raise TimeoutError("the mutant ran past its time limit")


def main() -> None:
    spec = json.load(open("mutants.json"))
    signal.signal(signal.SIGALRM, _timed_out)
    test_modules = {name.removesuffix(".py") for name in spec["tests"]}
    for i, source in enumerate(spec["mutants"]):
        with open(spec["target"], "w") as fh:
            fh.write(source)
        # Forget the module and the tests, so that this run imports the mutant afresh.
        for name in list(sys.modules):
            if name.split(".")[0] == spec["package"] or name in test_modules:
                del sys.modules[name]
        signal.alarm(int(spec["timeout"]))
        try:
            pytest.main(["-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1", f"--junitxml=junit{i}.xml",
                         *spec["tests"]])
        except TimeoutError:
            pass  # no report: every test counts as a killer
        finally:
            signal.alarm(0)


if __name__ == "__main__":
    main()
