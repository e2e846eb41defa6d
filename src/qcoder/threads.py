"""How idle OpenMP threads wait between parallel regions; libgomp reads this once, so it is set before torch loads.

A decode step is ~100 short kernel calls. If the second thread sleeps between them (passive), every call pays a
wake-up (~80 us on a VM): 0.5B decode measured 35 tok/s passive vs 53 tok/s with a short spin, 2 threads, idle
machine. Spinning forever (active) is no faster, and on a machine whose cores are all busy it is ruinous (4 tok/s
with 20000 spins while another process used both cores; passive 29, 2000 spins 18). So the default is a short spin:
about 2000 pauses, tens of microseconds, then sleep.
"""

from __future__ import annotations

import os

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
