"""Process-wide CPU runtime settings: how idle OpenMP threads wait, and how glibc's malloc serves large tensors.

OpenMP: libgomp reads its wait policy once, so it is set before torch loads.

A decode step is ~100 short kernel calls. If the second thread sleeps between them (passive), every call pays a
wake-up (~80 us on a VM): 0.5B decode measured 35 tok/s passive vs 53 tok/s with a short spin, 2 threads, idle
machine. Spinning forever (active) is no faster, and on a machine whose cores are all busy it is ruinous (4 tok/s
with 20000 spins while another process used both cores; passive 29, 2000 spins 18). So the default is a short spin:
about 2000 pauses, tens of microseconds, then sleep.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

POLICIES = ("spin", "passive", "active")
SPIN_COUNT = "2000"


def configure_openmp(policy: str | None = None) -> None:
    """policy: spin (short, the default), passive (sleep at once) or active (spin until work comes).
    With no policy, an OMP_WAIT_POLICY or GOMP_SPINCOUNT already in the environment is left as it is."""
    if policy is None:
        if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
            return
        policy = "spin"
    if policy not in POLICIES:
        raise ValueError(f"unknown OpenMP wait policy {policy!r} (choose {', '.join(POLICIES)})")
    os.environ.pop("OMP_WAIT_POLICY", None)
    os.environ.pop("GOMP_SPINCOUNT", None)
    if policy == "spin":
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    else:
        os.environ["OMP_WAIT_POLICY"] = policy.upper()


# glibc's mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for it
TRIM_THRESHOLD = 1 << 30


@functools.cache
def configure_malloc() -> bool:
    """Keep freed activation memory for the next prefill step instead of handing it back to the kernel.

    By default glibc serves every block over 128 KiB (or the threshold its frees have raised it to) with a fresh
    mmap and unmaps it on free, so each of a prefill step's large temporaries is zero-filled page by page again:
    on 2 cores the 1.5B prefilled a 512-token prompt at 150 tok/s in a fresh process and 240 in one whose earlier
    work had happened to raise the threshold. True when set; the environment's own MALLOC_*_ settings win, and
    elsewhere than glibc nothing is done."""
    if not sys.platform.startswith("linux") or any(
        v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the OS now. With the trim threshold raised (configure_malloc), glibc
    keeps what loading freed: parsing the tokenizer's 5 MB of JSON left 80 MiB resident. Elsewhere than glibc,
    nothing is done."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
