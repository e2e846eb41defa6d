"""Run untrusted programs: one process group each, hard limits, a throw-away directory, no network.

Layers, outermost first:
- wall-clock timeout; on expiry the whole process group is killed, and (when we run as root) every
  process of the run's throw-away uid, which also catches children that left the group;
- rlimits: CPU time, address space, file size (which also caps captured output: it goes to files),
  process count, no core dumps;
- as root: a fresh random uid per run (RLIMIT_NPROC is not enforced for root, and a private uid cannot
  signal the harness or write to root's files); cgroups are read-only here, so uids are the fork defence;
- namespaces when the kernel allows: a new network namespace (no interfaces up: no network at all) and
  a new mount namespace whose /tmp, /var/tmp, /dev/shm are private tmpfs (writes there vanish);
- for Python: a reliability guard inside the child (`guard.py`), a second layer, not the sandbox.

`run()` never raises for anything the program does; problems of the sandbox itself come back as
status "sandbox_error" with a reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    isolate: bool = True  # network + mount namespaces when available


@dataclass
class Isolation:
    network: bool = False
    private_tmp: bool = False
    uid: int | None = None
    notes: list[str] = field(default_factory=list)


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


def run(argv: list[str], *, files: dict[str, str | bytes] | None = None, limits: Limits | None = None,
        env: dict[str, str] | None = None, collect: tuple[str, ...] = (), reveal: tuple[str, ...] = ()) -> SandboxResult:
    """Run `argv` in a fresh directory holding `files`; return the outcome and the `collect`ed files.

    `reveal`: directories the program needs (a toolchain) that sit below one its uid cannot enter.
    """
    limits = limits or Limits()
    workdir = tempfile.mkdtemp(prefix="qcoder-sbx-")
    uid = _take_uid() if os.geteuid() == 0 else None
    try:
        _populate(workdir, files or {}, uid)
        return _run_in(workdir, argv, limits, env, uid, collect, reveal)
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


def probe() -> Isolation:
    """What isolation a sandboxed program gets on this machine."""
    return run([sys.executable, "-I", "-c", "pass"], limits=Limits(timeout_s=30)).isolation


_uids_in_use: set[int] = set()
_uids_lock = threading.Lock()


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
            collect: tuple[str, ...], extra_reveal: tuple[str, ...]) -> SandboxResult:
    program = shutil.which(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
    if program is None:
        return SandboxResult("sandbox_error", None, "", "", 0.0, reason=f"program not found: {argv[0]}")
    needed = (sys.base_prefix, sys.prefix, os.path.dirname(program), os.path.dirname(GUARD), *extra_reveal)
    reveal = sorted({os.path.realpath(p) for p in needed})
    cfg = {"argv": [program, *argv[1:]], "cwd": workdir, "env": _child_env(workdir, env), "reveal": reveal,
           "rlimits": _rlimits(limits, uid), "uid": uid, "isolate": limits.isolate}
    report_r, report_w = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        try:
            proc = subprocess.Popen([sys.executable, "-I", LAUNCHER, json.dumps(cfg), str(report_w)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(report_w,),
                                    start_new_session=True, cwd=workdir)
        finally:
            os.close(report_w)
        timed_out = False
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)
        if uid is not None:
            _kill_uid(uid)
        proc.wait()
        duration = time.monotonic() - start
        isolation = _read_report(report_r, limits.isolate)
        stdout, stderr = _read_capped(out, limits.output_bytes), _read_capped(err, limits.output_bytes)
    status, reason = _classify(proc.returncode, stderr, timed_out, limits)
    collected = {}
    for name in collect:
        path = Path(workdir, name)
        if path.is_file() and not path.is_symlink():
            collected[name] = path.read_bytes()
    return SandboxResult(status, proc.returncode, stdout, stderr, duration, reason, isolation, collected)


def _read_report(fd: int, wanted: bool) -> Isolation:
    with os.fdopen(fd, "rb") as f:
        raw = f.read()
    iso = Isolation()
    if not raw:
        iso.notes.append("no isolation report from the launcher")
        return iso
    report = json.loads(raw)
    iso.network, iso.private_tmp, iso.uid = report["network"], report["private_tmp"], report["uid"]
    if wanted and not iso.network:
        iso.notes.append(f"network isolation unavailable: {report.get('network_reason', 'unknown')}")
    if wanted and not iso.private_tmp:
        iso.notes.append(f"private /tmp unavailable: {report.get('private_tmp_reason', 'no namespace')}")
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
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            # Zombies are already dead: only their parent (or init) can reap them.
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                pids.append(int(entry))
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
