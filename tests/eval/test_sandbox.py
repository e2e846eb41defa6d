"""Each misbehaviour is caught and reported, and neither the harness nor the machine is harmed.
(Isolation itself, file system and network: test_isolation.py.)

The bombs run with small limits, and only after a harmless probe showed the same limit is enforced.
"""

import os

from qcoder.eval import sandbox
from qcoder.eval.sandbox import Limits, run_python

SMALL = Limits(timeout_s=5, memory_bytes=256 << 20, max_procs=8, file_bytes=4 << 20, output_bytes=4096)


def small(**changes) -> Limits:
    return Limits(**{**SMALL.__dict__, **changes})


def test_pass_fail_and_output():
    ok = run_python("print('hello')", limits=SMALL)
    assert (ok.status, ok.stdout.strip(), ok.returncode) == ("pass", "hello", 0)
    bad = run_python("raise ValueError('nope')", limits=SMALL)
    assert bad.status == "fail" and "ValueError: nope" in bad.stderr


def test_fresh_directory_removed_and_stdin_closed():
    result = run_python("import os, sys\nprint(os.getcwd())\nprint(repr(sys.stdin.read()))", limits=SMALL)
    cwd, stdin = result.stdout.split()
    assert os.path.basename(cwd).startswith("qcoder-sbx-") and stdin == "''"
    assert not os.path.exists(cwd)


def test_infinite_loop_times_out():
    result = run_python("while True:\n    pass", limits=small(timeout_s=1))
    assert result.status == "timeout"


def test_cpu_limit_is_a_timeout_too():
    result = run_python("while True:\n    pass", limits=small(timeout_s=30, cpu_s=1))
    assert result.status == "timeout" and result.reason == "CPU-time limit"


def test_memory_bomb():
    probe = run_python("x = bytearray(300 << 20)", limits=SMALL)  # one allocation above the limit
    assert probe.status == "memory", probe.stderr
    bomb = run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))", limits=SMALL)
    assert bomb.status == "memory"


def test_fork_bomb_is_contained():
    probe = run_python("import os\nfor _ in range(12):\n    os.fork()\n", guard=False, limits=small(max_procs=4))
    assert "Resource temporarily unavailable" in probe.stderr, "process limit not enforced: not running the bomb"
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(bomb, guard=False, limits=small(timeout_s=2))
    assert result.status == "timeout"
    if result.isolation.uid is not None:  # every process of the run's private uid is gone
        assert sandbox._uid_processes(result.isolation.uid) == []


def test_guard_blocks_fork_inside_the_child():
    result = run_python("import os\nos.fork()", limits=SMALL)
    assert result.status == "fail" and "os.fork is disabled" in result.stderr


def test_huge_output_is_cut():
    result = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=SMALL)
    assert result.status == "crash" and "file-size limit" in result.reason
    assert len(result.stdout) < 5000 and "more bytes not kept" in result.stdout


def test_killing_the_harness_fails(tmp_path):
    me = os.getpid()
    guarded = run_python(f"import os, signal\nos.kill({me}, signal.SIGKILL)", limits=SMALL)
    assert guarded.status == "fail" and "disabled" in guarded.stderr
    if guarded.isolation.uid is not None:  # the raw attempt is only safe when a private uid blocks it
        raw = run_python(f"import os, signal\nos.kill({me}, signal.SIGKILL)\nos.kill(os.getppid(), 9)",
                         guard=False, limits=SMALL)
        assert raw.status == "fail" and "PermissionError" in raw.stderr
    assert os.getpid() == me  # still here


def test_missing_program_is_a_sandbox_error():
    result = sandbox.run(["no-such-program-qcoder"], limits=SMALL)
    assert result.status == "sandbox_error" and "not found" in result.reason
