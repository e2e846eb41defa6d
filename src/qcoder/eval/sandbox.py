"""Run untrusted programs: one process group each, hard limits, a throw-away directory, no network.

Layers, outermost first:
- wall-clock timeout; on expiry the whole process group is killed, and (when we run as root) every
  process of the run's throw-away uid, which also catches children that left the group;
- rlimits: CPU time, address space, file size (which also caps captured output: it goes to files),
  process count, no core dumps;
- as root: a fresh random uid per run (RLIMIT_NPROC is not enforced for root, and a private uid cannot
  signal the harness or write to root's files); cgroups are read-only here, so uids are the fork defence;
- namespaces (required unless `Limits.isolate` is off, i.e. `--no-sandbox`): a new network namespace (no
  interfaces up: no network at all) and a new mount namespace in which every file system is read-only,
  except the work dir and private tmpfs over /tmp, /var/tmp, /dev/shm (writes there vanish). As non-root
  these live in a user namespace mapping only the user's own uid, so the same holds without privileges;
  the harness then also makes itself non-dumpable, so a program running under its uid cannot read or
  write its memory through /proc or ptrace;
- no program may gain privileges (no_new_privs: setuid binaries stay unprivileged);
- for Python: a reliability guard inside the child (`guard.py`), a second layer, not the sandbox.

`run()` never raises for anything the program does; problems of the sandbox itself, including isolation
that could not be set up, come back as status "sandbox_error" with a reason: the program did not run.
An optional `channel` gets one end of a socket pair whose other end the program finds in the
QCODER_CHANNEL_FD variable: a private line to the harness that no file or network address reaches.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from qcoder.eval.sandbox_launcher import SANDBOX_ERROR_EXIT

LAUNCHER = str(Path(__file__).with_name("sandbox_launcher.py"))
GUARD = str(Path(__file__).with_name("guard.py"))
MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")
# Throw-away uids come from a range no real account uses, so a run's uid identifies its processes.
UID_RANGE = (1_000_000, 1_999_999)


@dataclass
class Limits:
    timeout_s: float = 10.0
    cpu_s: int | None = None  # default: the wall-clock timeout, rounded up, plus one
    memory_bytes: int = 4 << 30
    max_procs: int = 64
    file_bytes: int = 64 << 20
    output_bytes: int = 64 << 10  # kept per stream in the result
    isolate: bool = True  # namespaces are required: without them the program does not run (off: --no-sandbox)
    # As root, isolate the way an unprivileged user is isolated (a user namespace, under a throw-away uid),
    # so that path can be exercised on a machine where the harness runs as root.
    user_namespace: bool = False


@dataclass
class Isolation:
    network: bool = False
    private_tmp: bool = False
    readonly_root: bool = False
    user_namespace: bool = False
    uid: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.network and self.private_tmp and self.readonly_root


@dataclass
class SandboxResult:
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    reason: str = ""
    isolation: Isolation = field(default_factory=Isolation)
    files: dict[str, bytes] = field(default_factory=dict)
    channel: object = None  # what the `channel` function returned


def run(argv: list[str], *, files: dict[str, str | bytes] | None = None, limits: Limits | None = None,
        env: dict[str, str] | None = None, collect: tuple[str, ...] = (), reveal: tuple[str, ...] = (),
        channel=None) -> SandboxResult:
    """Run `argv` in a fresh directory holding `files`; return the outcome and the `collect`ed files.

    `reveal`: directories the program needs (a toolchain) that sit below one its uid cannot enter.
    `channel(sock)`: called in a thread with the harness's end of the private line while the program runs.
    """
    limits = limits or Limits()
    workdir = tempfile.mkdtemp(prefix="qcoder-sbx-")
    uid = _take_uid() if os.geteuid() == 0 else None
    if uid is None:
        _hide_memory()
    try:
        _populate(workdir, files or {}, uid)
        return _run_in(workdir, argv, limits, env, uid, collect, reveal, channel)
    except OSError as exc:
        return SandboxResult("sandbox_error", None, "", "", 0.0, reason=f"{type(exc).__name__}: {exc}")
    finally:
        if uid is not None:
            _kill_uid(uid)
            with _uids_lock:
                _uids_in_use.discard(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def run_python(code: str, *, args: tuple[str, ...] = (), files: dict[str, str | bytes] | None = None,
               guard: bool = True, limits: Limits | None = None, collect: tuple[str, ...] = ()) -> SandboxResult:
    """Run Python source `code` as main.py (under the reliability guard unless guard=False)."""
    files = dict(files or {})
    files["main.py"] = code
    guard_argv = [GUARD] if guard else []
    return run([sys.executable, "-I", *guard_argv, "main.py", *args], files=files, limits=limits, collect=collect)


def probe(limits: Limits | None = None) -> Isolation:
    """What isolation a sandboxed program gets on this machine (with these limits)."""
    result = run([sys.executable, "-I", "-c", "pass"], limits=limits or Limits(timeout_s=30))
    if result.status == "sandbox_error":
        result.isolation.notes.append(f"the sandbox cannot start: {result.reason}")
    return result.isolation


_uids_in_use: set[int] = set()
_uids_lock = threading.Lock()
PR_SET_DUMPABLE = 4


def _hide_memory() -> None:
    """A program running under our own uid could otherwise open /proc/<harness>/mem (where the expected
    answers live) or ptrace us; a non-dumpable process allows neither to anyone without CAP_SYS_PTRACE."""
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _take_uid() -> int:
    """A random uid from UID_RANGE that no other run of this process holds (other processes: unlikely)."""
    with _uids_lock:
        while (uid := random.randint(*UID_RANGE)) in _uids_in_use:
            pass
        _uids_in_use.add(uid)
        return uid


def _populate(workdir: str, files: dict[str, str | bytes], uid: int | None) -> None:
    for name, content in files.items():
        path = Path(workdir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    if uid is not None:  # the throw-away uid owns its directory and nothing else
        for root, dirs, names in os.walk(workdir):
            for name in [*dirs, *names]:
                os.chown(os.path.join(root, name), uid, uid)
        os.chown(workdir, uid, uid)


def _rlimits(limits: Limits, uid: int | None) -> dict[str, tuple[int, int]]:
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    # RLIMIT_NPROC counts every process of the real uid; without a private uid, leave room for ours.
    nproc = limits.max_procs if uid is not None else _count_processes(os.getuid()) + limits.max_procs
    # (soft, hard): the CPU soft limit sends SIGXCPU (reported as a timeout); the hard one SIGKILLs.
    return {"RLIMIT_CPU": (cpu, cpu + 1), "RLIMIT_AS": (limits.memory_bytes,) * 2, "RLIMIT_NPROC": (nproc,) * 2,
            "RLIMIT_FSIZE": (limits.file_bytes,) * 2, "RLIMIT_CORE": (0, 0)}


def _child_env(workdir: str, extra: dict[str, str] | None) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "TMPDIR": workdir,
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    env.update(extra or {})
    return env


def _run_in(workdir: str, argv: list[str], limits: Limits, env: dict | None, uid: int | None,
            collect: tuple[str, ...], extra_reveal: tuple[str, ...], channel) -> SandboxResult:
    program = shutil.which(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
    if program is None:
        return SandboxResult("sandbox_error", None, "", "", 0.0, reason=f"program not found: {argv[0]}")
    needed = (sys.base_prefix, sys.prefix, os.path.dirname(program), os.path.dirname(GUARD), *extra_reveal)
    reveal = sorted({os.path.realpath(p) for p in needed})
    as_user = uid is not None and limits.user_namespace and limits.isolate
    cfg = {"argv": [program, *argv[1:]], "cwd": workdir, "env": _child_env(workdir, env), "reveal": reveal,
           "rlimits": _rlimits(limits, uid), "uid": None if as_user else uid, "as_uid": uid if as_user else None,
           "isolate": limits.isolate}
    ours, theirs = socket.socketpair() if channel else (None, None)
    if theirs:
        cfg["env"]["QCODER_CHANNEL_FD"] = str(theirs.fileno())
    report_r, report_w = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        try:
            passed = (report_w, theirs.fileno()) if theirs else (report_w,)
            proc = subprocess.Popen([sys.executable, "-I", LAUNCHER, json.dumps(cfg), str(report_w)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=passed,
                                    start_new_session=True, cwd=workdir)
        finally:
            os.close(report_w)
            if theirs:
                theirs.close()
        talker = _Talker(channel, ours) if channel else None
        timed_out = False
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)
        if uid is not None:
            _kill_uid(uid)
        proc.wait()
        talked = talker.finish() if talker else None
        duration = time.monotonic() - start
        isolation = _read_report(report_r, limits.isolate)
        stdout, stderr = _read_capped(out, limits.output_bytes), _read_capped(err, limits.output_bytes)
    status, reason = _classify(proc.returncode, stderr, timed_out, limits)
    if limits.isolate and status != "sandbox_error" and not isolation.complete:
        status, reason = "sandbox_error", "; ".join(isolation.notes) or "isolation incomplete"
    collected = {}
    for name in collect:
        path = Path(workdir, name)
        if path.is_file() and not path.is_symlink():
            collected[name] = path.read_bytes()
    return SandboxResult(status, proc.returncode, stdout, stderr, duration, reason, isolation, collected, talked)


class _Talker:
    """Runs the harness's side of the private line in a thread while the program runs."""

    def __init__(self, channel, sock: socket.socket):
        self.sock, self.result, self.error = sock, None, None
        self.thread = threading.Thread(target=self._run, args=(channel,), daemon=True, name="sandbox-channel")
        self.thread.start()

    def _run(self, channel) -> None:
        try:
            self.result = channel(self.sock)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in finish()
            self.error = exc

    def finish(self):
        """The program is gone; a talker still waiting on the line is woken by shutting it down."""
        self.thread.join(timeout=1.0)
        if self.thread.is_alive():
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.thread.join()
        self.sock.close()
        if self.error is not None:
            raise self.error
        return self.result


def _read_report(fd: int, wanted: bool) -> Isolation:
    with os.fdopen(fd, "rb") as f:
        raw = f.read()
    iso = Isolation()
    if not wanted:
        iso.notes.append("isolation off (--no-sandbox): no namespaces, the file system is writable")
    if not raw:
        if wanted:
            iso.notes.append("no isolation report from the launcher")
        return iso
    report = json.loads(raw)
    for name in ("network", "private_tmp", "readonly_root", "user_namespace", "uid"):
        setattr(iso, name, report[name])
    return iso


def _read_capped(f, cap: int) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    text = f.read(cap).decode(errors="replace")
    if size > cap:
        text += f"\n[... {size - cap} more bytes not kept]"
    return text


def _classify(rc: int, stderr: str, timed_out: bool, limits: Limits) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.timeout_s:g} s"
    if rc == -signal.SIGXCPU:
        return "timeout", "CPU-time limit"
    if rc == SANDBOX_ERROR_EXIT and "qcoder-sandbox-error:" in stderr:
        return "sandbox_error", stderr.split("qcoder-sandbox-error:", 1)[1].strip().splitlines()[0]
    tail = stderr[-2000:]
    if rc != 0 and any(marker in tail for marker in MEMORY_MARKERS):
        return "memory", f"address-space limit of {limits.memory_bytes >> 20} MiB"
    # Python ignores SIGXFSZ, so there the limit shows as EFBIG ("File too large").
    if rc == -signal.SIGXFSZ or (rc != 0 and "[Errno 27] File too large" in tail):
        return "crash", f"file-size limit of {limits.file_bytes >> 20} MiB (output or files)"
    if rc < 0:
        return "crash", f"killed by {signal.Signals(-rc).name}"
    if rc != 0:
        return "fail", f"exit status {rc}"
    return "pass", ""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _uid_processes(uid: int) -> list[int]:
    """The live processes whose real uid is `uid`."""
    pids = []
    for process in psutil.process_iter(["uids", "status"]):
        uids, status = process.info["uids"], process.info["status"]
        # Zombies are already dead: only their parent (or init) can reap them.
        if uids is not None and uids.real == uid and status != psutil.STATUS_ZOMBIE:
            pids.append(process.pid)
    return pids


def _count_processes(uid: int) -> int:
    return len(_uid_processes(uid))


def _kill_uid(uid: int) -> None:
    """Kill every process of a throw-away uid, repeating while a fork bomb keeps replacing them."""
    for _ in range(50):
        pids = _uid_processes(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
