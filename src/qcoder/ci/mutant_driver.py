"""Runs inside the sandbox: the tests against each mutant in turn.

Reads mutants.json ({"target", "tests", "timeout", "mutants": [source, ...]}) and writes junit<i>.xml per
mutant. pytest is imported once; each mutant runs in a forked child, so a mutant that loops forever (in any of
its tests, or at import) is killed at its time limit without holding up the rest. A killed child writes no
report: its tests count as killers. (An alarm in one process is not enough: pytest catches the exception it
raises as one test's failure and goes on to the next test, which loops again.)
"""

import json
import os
import signal
import sys
import time

import pytest


def run_mutant(i: int, source: str, spec: dict) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with open(spec["target"], "w") as fh:
                fh.write(source)
            code = int(pytest.main(["-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                                    f"--junitxml=junit{i}.xml", *spec["tests"]]))
        finally:
            sys.stdout.flush()
            os._exit(code)
    deadline = time.monotonic() + spec["timeout"]
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if os.path.exists(f"junit{i}.xml"):
                os.remove(f"junit{i}.xml")
            return
        time.sleep(0.02)


def main() -> None:
    spec = json.load(open("mutants.json"))
    for i, source in enumerate(spec["mutants"]):
        run_mutant(i, source, spec)


if __name__ == "__main__":
    main()
