"""A review finding's example call, run on the code before and after the change.

A small model flags refactors as bugs. When it claims a bug in a Python file, it also gives a call of the
changed function that the change breaks; that call is run (in the sandbox: it is model-written code) on the
old and on the new version of the file. Equal results mean the model's own example shows no change in
behaviour, and the finding is dropped; different results become its evidence. A call that cannot be compared
(the file does not import on its own, the function is new, no call given) leaves the finding as it was.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from qcoder.ci.diff import FileChange
from qcoder.eval import sandbox

TIMEOUT_S = 10
MAX_CALL_CHARS = 300

# Runs in the sandbox: imports old.py and new.py as modules and evaluates the call in each one's namespace.
DRIVER = r'''
import importlib.util, json, signal, sys

def stop(signum, frame):
    raise TimeoutError("the call ran past its time limit")

def outcome(path, call):
    spec = importlib.util.spec_from_file_location("reviewed", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        return {"unusable": f"import: {type(exc).__name__}: {exc}"}
    signal.alarm(int(sys.argv[2]))
    try:
        return {"result": repr(eval(call, vars(module)))}
    except NameError as exc:
        return {"unusable": f"NameError: {exc}"}
    except BaseException as exc:
        return {"result": f"raised {type(exc).__name__}: {exc}"}
    finally:
        signal.alarm(0)

signal.signal(signal.SIGALRM, stop)
call = open("call.txt").read()
print(json.dumps({"old": outcome("old.py", call), "new": outcome("new.py", call)}))
'''


@dataclass
class Witness:
    comparable: bool
    same: bool = False
    old: str = ""
    new: str = ""
    why: str = ""  # why the call could not be compared


def old_text(change: FileChange) -> str:
    """The file before the change, rebuilt from the new version and the diff (hunks hold every difference)."""
    lines, old = change.lines, []
    for n in range(1, len(lines) + 2):
        old += change.removed.get(n, [])
        if n <= len(lines) and n not in change.added:
            old.append(lines[n - 1])
    return "\n".join(old) + "\n"


def run_call(change: FileChange, call: str) -> Witness:
    call = " ".join(call.split())
    if not call or len(call) > MAX_CALL_CHARS:
        return Witness(False, why="no call given" if not call else "the call is too long")
    try:
        compile(call, "call", "eval")
    except SyntaxError:
        return Witness(False, why="the call is not a Python expression")
    files = {"old.py": old_text(change), "new.py": change.new_text or "", "call.txt": call, "driver.py": DRIVER}
    result = sandbox.run([sys.executable, "-I", "driver.py", "x", str(TIMEOUT_S)], files=files,
                         limits=sandbox.Limits(timeout_s=TIMEOUT_S * 2 + 5))
    try:
        outcomes = json.loads(result.stdout.strip().splitlines()[-1])
        old, new = outcomes["old"], outcomes["new"]
    except (IndexError, KeyError, TypeError, json.JSONDecodeError):
        return Witness(False, why=f"the call did not run ({result.status})")
    for side in (old, new):
        if "unusable" in side:
            return Witness(False, why=str(side["unusable"])[:200])
    old_result, new_result = str(old["result"])[:300], str(new["result"])[:300]
    return Witness(True, old_result == new_result, old_result, new_result)
