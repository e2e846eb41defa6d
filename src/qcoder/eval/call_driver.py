"""Runs inside the sandbox on the harness's behalf: calls the candidate's function in a worker process and
reports to the harness over the private line (the QCODER_CHANNEL_FD socket).

The candidate's code runs only in the worker (`call_worker.py`, under the reliability guard), forked
before this process reads its job and with the line closed: it never holds the line to the harness, the
run's nonce, the tests or any expected value; it is given code and arguments and gives back values, which
are read as plain data (`wire.load_plain`). This process makes itself non-dumpable first, so the worker,
though it runs under the same uid, can neither read its memory nor open its file descriptors through
/proc or ptrace.

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
import signal
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import call_worker  # noqa: E402 - found beside this file, the sandbox has no qcoder package on its path
import wire  # noqa: E402

PR_SET_DUMPABLE = 4
MAX_ANSWER_BYTES = 1 << 30


class CandidateFailed(Exception):
    """The candidate raised, returned something that is not plain data, died, or ran out of time."""


class Worker:
    """The candidate's process, on the other end of a socket pair that only the two of us hold."""

    def __init__(self, line_fd: int):
        ours, theirs = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:  # the worker: drop the line before anything else happens here
            try:
                os.close(line_fd)
                ours.close()
                call_worker.serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.sock = ours
        self.status: int | None = None

    def load(self, code: str, entry_point: str) -> None:
        try:
            wire.send(self.sock, {"code": code, "entry_point": entry_point})
        except OSError:
            raise CandidateFailed(self._died("loading the code")) from None
        self._answer(None, "loading the code")

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
        for _ in range(500):  # the socket closed as it exited: its status follows at once
            if self._reap(os.WNOHANG):
                break
            time.sleep(0.01)
        return f"the program exited (status {self.status}) while {doing}, without an answer"

    def _reap(self, flags: int) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid == 0:
                return False
            self.status = os.waitstatus_to_exitcode(status)
        return True

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            self._reap(0)
        self.sock.close()


def run_outputs(job: dict, line: socket.socket, worker: Worker) -> None:
    try:
        worker.load(job["code"], job["entry_point"])
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
        if failed is not None or _next_step(line) != "continue":
            break


def _next_step(line: socket.socket) -> str:
    try:
        return wire.recv(line)
    except (wire.WireError, OSError):
        return "stop"  # the harness hung up: it has what it needs


def _set_report(job: dict, which: str, outputs: list, times: list, failed: dict | None) -> dict:
    return {"nonce": job["nonce"], "set": which, "outputs": outputs, "times": times, "failed": failed}


def run_check(job: dict, line: socket.socket, worker: Worker) -> None:
    """HumanEval: the prompt (its helpers, e.g. encode_shift), the tests, then check(candidate)."""
    try:
        worker.load(job["prompt"] + "\n\n" + job["code"], job["entry_point"])
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
    wire.send(line, {"nonce": job["nonce"], "passed": passed, "error": error})


def main() -> None:
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    line_fd = int(os.environ.pop("QCODER_CHANNEL_FD"))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    worker = Worker(line_fd)  # before the job is read: the worker's memory never holds it
    line = socket.socket(fileno=line_fd)
    job = wire.recv(line)
    try:
        {"outputs": run_outputs, "check": run_check}[job["mode"]](job, line, worker)
    except Exception:  # noqa: BLE001 - our own failure, told apart from the candidate's on the private line
        wire.send(line, {"nonce": job["nonce"], "harness_error": traceback.format_exc()[-2000:]})
    finally:
        worker.close()
        line.close()


if __name__ == "__main__":
    main()
