"""Runs inside the sandbox on the harness's behalf: calls the candidate's function in a worker process and
reports to the harness over the private line (the QCODER_CHANNEL_FD socket).

The candidate's code runs only in the worker (`call_worker.py`, under the reliability guard). The worker
never holds the line to the harness, the run's nonce, the tests or any expected value: it is given
arguments and gives back values, which are read as plain data (`wire.load_plain`). This process makes
itself non-dumpable before the worker starts, so the worker, though it runs under the same uid, can
neither read this process's memory nor open its file descriptors through /proc or ptrace.

One job comes down the line:
- {"mode": "outputs", "code", "entry_point", "sets": {"base": [args, ...], ...}, "time_limits", "nonce"}:
  for each set, the function is called on every input in order (stopping at the first exception or
  timeout; `time_limits` is None for no per-call limit); then {"nonce", "set", "outputs", "times",
  "failed"} goes up and the driver waits for "continue" or "stop" (the harness compares the outputs).
- {"mode": "check", "prompt", "code", "test", "entry_point", "nonce"}: HumanEval's check() runs here,
  with a stand-in for the candidate that forwards each call to the worker; {"nonce", "passed", "error"}
  goes up.
Standard library only (and `wire`, beside this file).
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wire  # noqa: E402 - found beside this file, the sandbox has no qcoder package on its path

WORKER = os.path.join(HERE, "call_worker.py")
GUARD = os.path.join(HERE, "guard.py")
PR_SET_DUMPABLE = 4
MAX_ANSWER_BYTES = 1 << 30
WORKER_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS")


class CandidateFailed(Exception):
    """The candidate raised, returned something that is not plain data, died, or ran out of time."""


class Worker:
    """The candidate's process, on the other end of a socket pair that only the two of us hold."""

    def __init__(self, code: str, entry_point: str):
        ours, theirs = socket.socketpair()
        env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
        self.proc = subprocess.Popen([sys.executable, "-I", GUARD, WORKER, str(theirs.fileno())], env=env,
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        try:
            wire.send(self.sock, {"code": code, "entry_point": entry_point})
            self._answer(None, "loading the code")
        except (CandidateFailed, OSError) as exc:
            self.close()
            raise CandidateFailed(str(exc)) from None

    def call(self, args, time_limit: float | None):
        try:
            wire.send(self.sock, args)
        except OSError:
            raise CandidateFailed(self._died("being called")) from None
        return self._answer(time_limit, "running")

    def _answer(self, time_limit: float | None, doing: str):
        self.sock.settimeout(time_limit)
        try:
            kind, value = wire.recv_plain(self.sock, MAX_ANSWER_BYTES)
        except TimeoutError:
            self.close()
            raise CandidateFailed(f"timeout ({time_limit:.2f} s)") from None
        except (wire.WireError, OSError, TypeError, ValueError) as exc:
            raise CandidateFailed(self._died(doing) if "closed" in str(exc) else str(exc)) from None
        if kind == "raise":
            raise CandidateFailed(str(value)[:500])
        return value

    def _died(self, doing: str) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return f"the program exited (status {code}) while {doing}, without an answer"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.sock.close()


def run_outputs(job: dict, line: socket.socket) -> None:
    try:
        worker = Worker(job["code"], job["entry_point"])
    except CandidateFailed as exc:
        first = next(iter(job["sets"]))
        wire.send(line, _set_report(job, first, [], [], {"index": None, "error": str(exc)}))
        return
    limits = job["time_limits"]
    for which, inputs in job["sets"].items():
        outputs, times, failed = [], [], None
        for index, args in enumerate(inputs):
            start = time.perf_counter()
            try:
                outputs.append(worker.call(args, limits[which][index] if limits else None))
            except CandidateFailed as exc:
                failed = {"index": index, "error": str(exc)}
                break
            times.append(time.perf_counter() - start)
        wire.send(line, _set_report(job, which, outputs, times, failed))
        if failed is not None or wire.recv(line) != "continue":
            break
    worker.close()


def _set_report(job: dict, which: str, outputs: list, times: list, failed: dict | None) -> dict:
    return {"nonce": job["nonce"], "set": which, "outputs": outputs, "times": times, "failed": failed}


def run_check(job: dict, line: socket.socket) -> None:
    """HumanEval: the prompt (its helpers, e.g. encode_shift), the tests, then check(candidate)."""
    try:
        worker = Worker(job["prompt"] + "\n\n" + job["code"], job["entry_point"])
    except CandidateFailed as exc:
        wire.send(line, {"nonce": job["nonce"], "passed": False, "error": str(exc)})
        return

    def candidate(*args):
        return worker.call(args, None)

    namespace = {"__name__": "__check__"}
    passed, error = False, ""
    try:
        exec(compile(job["prompt"], "prompt.py", "exec"), namespace)
        namespace[job["entry_point"]] = candidate
        exec(compile(job["test"], "test.py", "exec"), namespace)
        namespace["check"](candidate)
        passed = True
    except CandidateFailed as exc:
        error = str(exc)
    except BaseException as exc:  # noqa: BLE001 - a failing assertion, or the tests choking on a wrong answer
        error = traceback.format_exception_only(type(exc), exc)[-1].strip()[:500]
    worker.close()
    wire.send(line, {"nonce": job["nonce"], "passed": passed, "error": error})


def main() -> None:
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    line = socket.socket(fileno=int(os.environ.pop("QCODER_CHANNEL_FD")))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    job = wire.recv(line)
    try:
        {"outputs": run_outputs, "check": run_check}[job["mode"]](job, line)
    except Exception:  # noqa: BLE001 - our own failure, told apart from the candidate's on the private line
        wire.send(line, {"nonce": job["nonce"], "harness_error": traceback.format_exc()[-2000:]})
    line.close()


if __name__ == "__main__":
    main()
