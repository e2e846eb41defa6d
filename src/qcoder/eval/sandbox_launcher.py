"""Runs inside the sandboxed child, before the program: isolate, limit, drop privileges, exec.

Started by `sandbox.py` as `python -I sandbox_launcher.py CONFIG_JSON REPORT_FD` in a fresh session.
It is a separate process (not a preexec_fn) so that the harness may start sandboxes from many threads.
It writes a one-line JSON report of the isolation it set up to REPORT_FD, then execs the program.
When isolation is asked for and any part of it fails, the program never runs: the launcher exits with
SANDBOX_ERROR_EXIT and says why on stderr.
Only the standard library is used: this file must run fast and never import the harness.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added after the syscall tables were unified)
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
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


def _mount_setattr(path: str, flags: int, attr_set: int, attr_clr: int) -> None:
    attr = struct.pack("QQQQ", attr_set, attr_clr, 0, 0)
    ret = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_long(AT_FDCWD), ctypes.c_char_p(path.encode()),
                        ctypes.c_long(flags), ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)))
    _check(ret, f"mount_setattr {path}")


def _readonly_root() -> None:
    """Every mount, / and all below it, becomes read-only in this mount namespace (Linux 5.12+)."""
    _mount_setattr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)


def _writable(path: str) -> None:
    """Give the work dir its own writable mount inside the read-only tree."""
    _mount(path, path, None, MS_BIND)
    _mount_setattr(path, 0, 0, MOUNT_ATTR_RDONLY)


def _enter_user_namespace(flags: int) -> None:
    """A new user namespace mapping our own (unprivileged) uid and gid to themselves: the program runs with
    no capabilities anywhere, yet the launcher may mount inside its own namespaces first."""
    uid, gid = os.geteuid(), os.getegid()
    _unshare(flags | CLONE_NEWUSER)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _become(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    # Changing uid makes a process non-dumpable, which hands its /proc/self files to root; the uid map of a
    # user namespace entered later must be written by us.
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl dumpable")


def _isolate(cfg: dict, report: dict) -> None:
    """No network, a read-only view of every file system, private temporary dirs; raises when any of it fails.

    As root: network and mount namespaces directly, then (in `_drop_privileges`) a throw-away uid. Otherwise,
    or when `as_uid` asks root to act as that unprivileged user: the same namespaces inside a user namespace.
    """
    flags = CLONE_NEWNET | CLONE_NEWNS
    as_uid = cfg.get("as_uid")
    if os.geteuid() == 0 and as_uid is None:
        _unshare(flags)
    else:
        if as_uid is not None:  # root standing in for an unprivileged user: keep the toolchain reachable
            _unshare(CLONE_NEWNS)
            _mount("none", "/", None, MS_REC | MS_PRIVATE)
            _reveal(cfg["reveal"])
            _become(as_uid)
            report["uid"] = as_uid
        _enter_user_namespace(flags)
        report["user_namespace"] = True
    report["network"] = True
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    cwd, keep = cfg["cwd"], [p for p in cfg["reveal"] if os.path.isdir(p)]
    under_private = [p for p in dict.fromkeys([cwd, *keep]) if any(p == d or p.startswith(d + "/") for d in PRIVATE_DIRS)]
    fds = [(path, os.open(path, os.O_PATH)) for path in under_private]
    _readonly_root()
    report["readonly_root"] = True
    for path in PRIVATE_DIRS:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777")
    report["private_tmp"] = True
    for path, fd in fds:  # re-attach what lived under a private dir (a read-only bind, like its source)
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    _writable(cwd)
    _reveal(cfg["reveal"])


def _limit(cfg: dict) -> None:
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _drop_privileges(cfg: dict, report: dict) -> None:
    """As root, become a throw-away uid (RLIMIT_NPROC is only enforced for non-root users); in every case, no
    program started from here may gain privileges (setuid binaries such as sudo stay unprivileged)."""
    uid = cfg.get("uid")
    if uid is not None and os.geteuid() == 0:
        _become(uid)
        report["uid"] = uid
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl no_new_privs")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    report_fd = int(sys.argv[2])
    report = {"network": False, "private_tmp": False, "readonly_root": False, "user_namespace": False, "uid": None}
    try:
        if cfg["isolate"]:
            _isolate(cfg, report)
        elif cfg.get("uid") is not None:  # --no-sandbox as root: only what the throw-away uid needs to run
            _unshare(CLONE_NEWNS)
            _mount("none", "/", None, MS_REC | MS_PRIVATE)
            _reveal(cfg["reveal"])
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
