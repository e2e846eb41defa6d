"""The sandbox isolates or refuses: writes outside its work dir never land, the network is gone, and a
machine that cannot set up the namespaces runs nothing (unless isolation is explicitly turned off).

Both ways of isolating are exercised: root's (namespaces + a throw-away uid) and an unprivileged user's
(the same inside a user namespace; as root, `user_namespace=True` takes that path under a throw-away uid).
"""

import os
import platform
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from qcoder.eval import sandbox
from qcoder.eval.sandbox import Limits

SMALL = Limits(timeout_s=20, memory_bytes=512 << 20, max_procs=16, file_bytes=4 << 20)
WRITER = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        print("wrote", path)
    except OSError as exc:
        print("blocked", path, exc.strerror)
open("inside.txt", "w").write("ok")
"""
MODES = [pytest.param(False, id="default"), pytest.param(True, id="user-namespace")]


def limits(user_namespace: bool, **changes) -> Limits:
    return Limits(**{**SMALL.__dict__, "user_namespace": user_namespace, **changes})


@pytest.fixture
def open_dir():
    """A directory outside every temporary dir that anyone may write to: without isolation, a sample could."""
    # a checkout under /tmp (CI clones may live there) is inside a private dir; /srv is outside them all
    here = Path(__file__).resolve().parent
    base = Path("/srv") if here.is_relative_to("/tmp") or here.is_relative_to("/var/tmp") else here
    path = base / f".sandbox-probe-{uuid.uuid4().hex}"
    path.mkdir()
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


@pytest.mark.parametrize("user_namespace", MODES)
def test_writes_outside_the_work_dir_never_land(user_namespace, open_dir):
    tag = uuid.uuid4().hex
    targets = [open_dir / "escaped.txt", Path.home() / f".qcoder-escape-{tag}", Path(f"/tmp/qcoder-escape-{tag}"),
               Path(f"/var/tmp/qcoder-escape-{tag}"), Path(f"/dev/shm/qcoder-escape-{tag}")]
    result = sandbox.run([sys.executable, "-I", "main.py", *map(str, targets)], files={"main.py": WRITER},
                         limits=limits(user_namespace), collect=("inside.txt",))
    assert result.status == "pass", (result.reason, result.stderr)
    assert result.files == {"inside.txt": b"ok"}  # the work dir itself stays writable
    assert f"blocked {open_dir / 'escaped.txt'} Read-only file system" in result.stdout
    for target in targets:
        assert not target.exists(), f"{target} escaped the sandbox"
    iso = result.isolation
    assert (iso.network, iso.private_tmp, iso.readonly_root) == (True, True, True)
    assert iso.user_namespace == (user_namespace or os.geteuid() != 0)


@pytest.mark.parametrize("user_namespace", MODES)
def test_the_program_has_no_privileges(user_namespace):
    code = "import os\nstatus = open('/proc/self/status').read()\n" \
           "print(os.getuid(), [l.split()[1] for l in status.splitlines() if l.startswith(('CapEff', 'NoNewPrivs'))])"
    result = sandbox.run_python(code, limits=limits(user_namespace))
    assert result.status == "pass", result.stderr
    uid, caps = result.stdout.split(maxsplit=1)
    assert int(uid) != 0 and caps.strip() == "['0000000000000000', '1']"


@pytest.mark.parametrize("user_namespace", MODES)
def test_network_is_gone(user_namespace):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')"
    try:
        result = sandbox.run_python(code, limits=limits(user_namespace))
        assert result.status == "fail" and "connected" not in result.stdout, result.stderr
        assert result.isolation.network
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


UNSHARE_SYSCALL = {"x86_64": 272, "aarch64": 97}
# Runs the harness in a process where the kernel refuses new namespaces (as a container's default seccomp
# profile does), then tries a sandboxed program that would leave a mark outside its work dir.
NO_NAMESPACES = """
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
nr = {nr}
program = [(0x20, 0, 0, 0), (0x15, 0, 1, nr), (0x06, 0, 0, 0x00050000 | 1), (0x06, 0, 0, 0x7FFF0000)]
code = b"".join(struct.pack("HBBI", *ins) for ins in program)
buf = ctypes.create_string_buffer(code)
fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0
from qcoder.eval import sandbox
result = sandbox.run_python("import sys; open(sys.argv[1], 'w').write('ran')", args=(sys.argv[1],),
                            limits=sandbox.Limits(timeout_s=20))
print(result.status, "|", result.reason)
"""


@pytest.mark.skipif(platform.machine() not in UNSHARE_SYSCALL, reason="seccomp test written for x86_64/aarch64")
def test_refuses_to_run_when_namespaces_are_unavailable(open_dir):
    mark = open_dir / "ran.txt"
    script = textwrap.dedent(NO_NAMESPACES).replace("{nr}", str(UNSHARE_SYSCALL[platform.machine()]))
    proc = subprocess.run([sys.executable, "-c", script, str(mark)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    status, reason = proc.stdout.strip().split(" | ")
    assert status == "sandbox_error" and "unshare" in reason
    assert not mark.exists()


def test_no_sandbox_runs_without_isolation_and_says_so():
    result = sandbox.run_python("print('ran')", limits=Limits(**{**SMALL.__dict__, "isolate": False}))
    assert (result.status, result.stdout.strip()) == ("pass", "ran")
    assert not result.isolation.complete and "--no-sandbox" in result.isolation.notes[0]
