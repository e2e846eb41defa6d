"""OpenMP wait policy (set before torch loads) and the engine's thread count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qcoder.errors import QcoderError
from qcoder.threads import SPIN_COUNT, configure_openmp


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)


def test_default_is_a_short_spin(clean_env):
    configure_openmp()
    assert os.environ["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in os.environ


def test_the_users_environment_wins_unless_a_policy_is_given(clean_env, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    configure_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ
    configure_openmp("spin")
    assert os.environ["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in os.environ
    configure_openmp("active")
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in os.environ
    with pytest.raises(ValueError, match="unknown OpenMP wait policy"):
        configure_openmp("lazy")


def test_the_cli_sets_it_before_torch_loads(clean_env):
    code = "import os, sys; from qcoder import cli; sys.argv = ['qcoder', 'models', '--json']; cli.main(); " \
        "print('\\n' + repr((os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == repr((SPIN_COUNT, False))


def test_threads_must_be_positive():
    from qcoder.engine.engine import LLMEngine

    with pytest.raises(QcoderError, match="threads must be at least 1"):
        LLMEngine("no-such-model", threads=0)


def test_the_users_malloc_settings_win(monkeypatch):
    from qcoder.threads import configure_malloc

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    configure_malloc.cache_clear()
    try:
        assert configure_malloc() is False
    finally:
        configure_malloc.cache_clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim")
def test_release_freed_memory_hands_the_freed_heap_back():
    # in a fresh process: the trim threshold raised as the loader raises it, 100 MB of small objects freed
    script = """
import ctypes, sys
from qcoder.threads import configure_malloc, release_freed_memory
if not configure_malloc():
    print("skip"); sys.exit()
def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon"))
blocks = [bytearray(1000) for _ in range(100_000)]
del blocks
kept = anon()
release_freed_memory()
print(kept - anon())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    if out == "skip":
        pytest.skip("not glibc")
    assert int(out) > 50_000  # kB handed back
