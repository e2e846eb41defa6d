"""Runs inside the sandboxed child, before the program: isolate, limit, drop privileges, exec.

Started by `sandbox.py` as `python -I sandbox_launcher.py CONFIG_JSON REPORT_FD` in a fresh session.
It is a separate process (not a preexec_fn) so that the harness may start sandboxes from many threads.
It writes a one-line JSON report of what isolation it achieved to REPORT_FD, then execs the program.
Only the standard library is used: this file must run fast and never import the harness.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
# World-writable places a program could leave files in; each gets a private, throw-away tmpfs.
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
SANDBOX_ERROR_EXIT = 125

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    ret = _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data))
    _check(ret, f"mount {target}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _private_tmp(cwd: str, keep: list[str]) -> None:
    """Cover the world-writable dirs with tmpfs; re-attach the work dir, and any path the program needs (a
    virtualenv or qcoder itself in a checkout under /tmp), when it lives under one of them."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    under = [p for p in dict.fromkeys([cwd, *keep])
             if os.path.isdir(p) and any(p == d or p.startswith(d + "/") for d in PRIVATE_DIRS)]
    fds = [(path, os.open(path, os.O_PATH)) for path in under]
    for path in PRIVATE_DIRS:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777")
    for path, fd in fds:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def _first_closed_ancestor(path: str) -> str | None:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _reveal(paths: list[str]) -> None:
    """Re-expose paths under a directory others cannot enter (e.g. a Python installed under /root).

    The closed directory is covered by an empty tmpfs, so the rest of it stays hidden from the program.
    """
    plan = [(closed, path, os.open(path, os.O_PATH)) for path in paths
            if os.path.isdir(path) and (closed := _first_closed_ancestor(path))]
    for closed in dict.fromkeys(closed for closed, _, _ in plan):
        _mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for _, path, fd in plan:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def _isolate(cfg: dict, report: dict) -> None:
    """Network and filesystem namespaces: as root directly, otherwise inside a user namespace."""
    if not cfg["isolate"]:
        return
    flags = CLONE_NEWNET | CLONE_NEWNS
    try:
        if os.geteuid() == 0:
            _unshare(flags)
        else:
            uid, gid = os.geteuid(), os.getegid()
            _unshare(flags | CLONE_NEWUSER)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        report["network"] = True
    except OSError as exc:
        report["network_reason"] = str(exc)
        return
    try:
        _private_tmp(cfg["cwd"], cfg["reveal"])
        report["private_tmp"] = True
        _reveal(cfg["reveal"])
    except OSError as exc:
        report["private_tmp_reason"] = str(exc)


def _limit(cfg: dict) -> None:
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _drop_privileges(cfg: dict, report: dict) -> None:
    """As root, become a throw-away uid: RLIMIT_NPROC is only enforced for non-root users."""
    uid = cfg.get("uid")
    if uid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    report["uid"] = uid


def main() -> None:
    cfg = json.loads(sys.argv[1])
    report_fd = int(sys.argv[2])
    report = {"network": False, "private_tmp": False, "uid": None}
    try:
        _isolate(cfg, report)
        _limit(cfg)
        _drop_privileges(cfg, report)
        os.chdir(cfg["cwd"])
        os.write(report_fd, json.dumps(report).encode())
        os.close(report_fd)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except Exception as exc:  # noqa: BLE001 - anything here is a sandbox failure, reported as such
        print(f"qcoder-sandbox-error: {type(exc).__name__}: {exc}", file=sys.stderr)
        os._exit(SANDBOX_ERROR_EXIT)


if __name__ == "__main__":
    main()
